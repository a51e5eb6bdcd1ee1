"""Planning an import run: partition dates, the s3_key gate, shard counts, job names, the job's inputs."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from types import SimpleNamespace

import pytest

from batch_import.files import (
    ImportSettings,
    LandingKeyError,
    confine_to_landing_prefix,
    job_name_for,
    job_name_prefix,
    partition_date,
    plan_imports,
    s3_key_pattern,
    shard_count_for,
)
from csv_importer.import_id import derive_import_id

LANDING = "incoming/"
BUCKET = "landing-bucket"


def settings(**overrides: object) -> ImportSettings:
    values: dict[str, object] = {
        "bucket_name": BUCKET,
        "landing_prefix": LANDING,
        "manifest_prefix": "manifests/",
        "max_reject_ratio": 0.1,
        "configured_max_reject_ratio": 0.1,
        "shard_threshold_bytes": 1000,
        "shard_target_bytes": 1000,
        "max_shards": 4,
    }
    values.update(overrides)
    return ImportSettings(**values)  # type: ignore[arg-type]


def test_partition_date_is_the_logical_date() -> None:
    context = {"logical_date": datetime(2026, 3, 4, tzinfo=UTC), "dag_run": SimpleNamespace()}
    assert partition_date(context) == "2026-03-04"


def test_partition_date_without_logical_date_uses_run_after() -> None:
    run = SimpleNamespace(logical_date=None, run_after=datetime(2026, 5, 6, 7, 8, tzinfo=UTC))
    assert partition_date({"dag_run": run}) == "2026-05-06"


@pytest.mark.parametrize(
    "s3_key",
    [
        "incoming/2026-01-02/orders.csv",
        "incoming/2026-01-02/orders.CSV.GZ",
        "incoming/adhoc/orders 2.csv",
        f"s3://{BUCKET}/incoming/2026-01-02/orders.csv",
    ],
)
def test_keys_under_the_landing_prefix_are_accepted(s3_key: str) -> None:
    key = confine_to_landing_prefix(s3_key, landing_prefix=LANDING, bucket_name=BUCKET)
    assert key.startswith(LANDING)
    assert key == s3_key.removeprefix(f"s3://{BUCKET}/")


@pytest.mark.parametrize(
    ("s3_key", "reason"),
    [
        pytest.param("", "empty", id="empty"),
        pytest.param("other/orders.csv", "not under the landing prefix", id="outside"),
        pytest.param("/incoming/orders.csv", "not under the landing prefix", id="leading-slash"),
        pytest.param("incoming/../manifests/x.csv", "'..'", id="dot-dot"),
        pytest.param("incoming/./orders.csv", "'.'", id="dot"),
        pytest.param("incoming//orders.csv", "empty", id="double-slash"),
        pytest.param("incoming/2026-01-02/orders.json", ".csv and .csv.gz", id="not-csv"),
        pytest.param(
            "s3://another-bucket/incoming/orders.csv", "only keys in the pipeline's bucket", id="bucket"
        ),
        pytest.param("incoming/a\nb.csv", "control characters", id="newline"),
    ],
)
def test_keys_outside_the_landing_prefix_are_refused_by_name(s3_key: str, reason: str) -> None:
    with pytest.raises(LandingKeyError, match=re.escape(reason)) as refused:
        confine_to_landing_prefix(s3_key, landing_prefix=LANDING, bucket_name=BUCKET)
    assert repr(s3_key) in str(refused.value)


@pytest.mark.parametrize(
    "s3_key",
    [
        "incoming/2026-01-02/orders.csv",
        "incoming/../orders.csv",
        "incoming/./orders.csv",
        "incoming//orders.csv",
        "incoming/x.txt",
        "incoming/a/Orders.Csv.Gz",
        "other/x.csv",
        "incoming/..",
    ],
)
def test_trigger_form_pattern_agrees_with_the_task_gate(s3_key: str) -> None:
    try:
        confine_to_landing_prefix(s3_key, landing_prefix=LANDING, bucket_name=BUCKET)
        accepted = True
    except LandingKeyError:
        accepted = False
    assert bool(re.search(s3_key_pattern(LANDING), s3_key)) is accepted


@pytest.mark.parametrize(
    ("size", "expected"),
    [(0, 1), (1000, 1), (1001, 2), (2500, 3), (10**9, 4)],
)
def test_shard_counts_grow_with_size_up_to_the_maximum(size: int, expected: int) -> None:
    assert shard_count_for(size, threshold_bytes=1000, target_bytes=1000, max_shards=4) == expected


def test_a_single_shard_maximum_never_makes_an_array_job() -> None:
    assert shard_count_for(10**9, threshold_bytes=1000, target_bytes=1000, max_shards=1) == 1


def test_job_names_are_deterministic_valid_and_distinct_per_run_and_file() -> None:
    name = job_name_for(
        dag_id="d", run_id="manual__2026-01-01T00:00:00+00:00", import_id="abc", s3_key="k/ü x.csv"
    )
    assert name == job_name_for(
        dag_id="d", run_id="manual__2026-01-01T00:00:00+00:00", import_id="abc", s3_key="k/ü x.csv"
    )
    assert re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}", name)
    assert name != job_name_for(dag_id="d", run_id="scheduled__x", import_id="abc", s3_key="k/ü x.csv")
    assert name != job_name_for(
        dag_id="d", run_id="manual__2026-01-01T00:00:00+00:00", import_id="abd", s3_key="k/ü x.csv"
    )
    assert len(job_name_for(dag_id="d", run_id="r", import_id="i", s3_key="x" * 500 + ".csv")) <= 128


def test_every_runs_job_of_one_import_starts_with_the_imports_prefix_and_no_other_imports_does() -> None:
    key = "incoming/2026-01-01/orders.csv"
    prefix = job_name_prefix(key, "0123456789abcdef01234567")
    event_run = job_name_for(
        dag_id="d", run_id="asset_triggered__1", import_id="0123456789abcdef01234567", s3_key=key
    )
    scheduled = job_name_for(
        dag_id="d", run_id="scheduled__1", import_id="0123456789abcdef01234567", s3_key=key
    )
    new_version = job_name_for(
        dag_id="d", run_id="scheduled__1", import_id="fedcba9876543210fedcba98", s3_key=key
    )

    assert event_run != scheduled
    assert event_run.startswith(prefix)
    assert scheduled.startswith(prefix)
    assert not new_version.startswith(prefix)
    assert new_version.startswith(job_name_prefix(key))  # every version of the file


def test_plans_carry_the_jobs_inputs_and_array_properties_for_large_files() -> None:
    landed = [
        {"key": "incoming/2026-01-02/a.csv", "size": 10, "etag": '"e1"'},
        {"key": "incoming/2026-01-02/b.csv.gz", "size": 2500, "etag": '"e2"'},
    ]
    plans = plan_imports(landed, settings(), dag_id="dag", run_id="run")  # type: ignore[arg-type]
    assert [plan["s3_key"] for plan in plans] == [landed[0]["key"], landed[1]["key"]]
    small, large = plans
    assert small["import_id"] == derive_import_id(BUCKET, landed[0]["key"], '"e1"')
    assert small["array_properties"] is None
    assert large["shard_count"] == 3
    assert large["array_properties"] == {"size": 3}
    environment = {pair["name"]: pair["value"] for pair in large["container_overrides"]["environment"]}
    # Only what differs per file: the job definition holds the bucket, table, types, prefixes and writers.
    assert environment == {
        "key": landed[1]["key"],
        "import_id": large["import_id"],
        "expected_etag": '"e2"',
        "shard_count": "3",
    }
    assert (small["etag"], large["etag"]) == ('"e1"', '"e2"')


def test_a_runs_reject_ratio_is_an_override_only_when_it_differs_from_the_job_definitions() -> None:
    landed = [{"key": "incoming/2026-01-02/a.csv", "size": 10, "etag": '"e1"'}]
    (same,) = plan_imports(landed, settings(max_reject_ratio=0.1), dag_id="d", run_id="r")  # type: ignore[arg-type]
    (other,) = plan_imports(landed, settings(max_reject_ratio=0.25), dag_id="d", run_id="r")  # type: ignore[arg-type]
    names = [pair["name"] for pair in same["container_overrides"]["environment"]]
    assert "max_reject_ratio" not in names
    overrides = {pair["name"]: pair["value"] for pair in other["container_overrides"]["environment"]}
    assert overrides["max_reject_ratio"] == "0.25"
