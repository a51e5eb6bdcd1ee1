"""The import DAG end to end: real Airflow task runs (``dag.test()``), real ``csv-importer`` processes
on the local AWS endpoint, the real provisioned table and queue."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any
from unittest import mock

import pytest
from airflow.sdk.definitions.param import ParamValidationError
from airflow.sdk.exceptions import AirflowFailException

from tests.e2e.conftest import Pipeline, csv_text, task_states

pytestmark = pytest.mark.slow

HEADER = ["id", "name", "price"]


def rows(prefix: str, count: int) -> list[list[str]]:
    return [[f"{prefix}-{n:05d}", f"name {n}", str(n)] for n in range(count)]


def manifest_totals(pipeline: Pipeline, import_id: str) -> dict[str, int]:
    bucket = pipeline.config.bucket
    listed = pipeline.s3.list_objects_v2(
        Bucket=bucket.name, Prefix=f"{bucket.manifest_prefix}{import_id}/shard-"
    )
    totals = {"shards": 0, "rows_read": 0, "distinct_keys": 0, "rows_rejected": 0}
    for obj in listed.get("Contents", []):
        manifest = json.loads(pipeline.s3.get_object(Bucket=bucket.name, Key=obj["Key"])["Body"].read())
        totals["shards"] += 1
        for name in ("rows_read", "distinct_keys", "rows_rejected"):
            totals[name] += manifest[name]
    return totals


def test_partition_with_several_files_is_imported_sharded_and_verified(pipeline: Pipeline) -> None:
    date = "2026-02-01"
    small = rows("small", 30)
    big = rows("big", 300) + rows("big", 40)  # 40 duplicate keys, spread over the shards by key hash
    pipeline.land(f"incoming/{date}/small.csv", csv_text(HEADER, small))
    pipeline.land(f"incoming/{date}/packed.csv.gz", csv_text(HEADER, rows("gz", 25)))
    pipeline.land(f"incoming/{date}/big.csv", csv_text(HEADER, big))
    pipeline.land(f"incoming/{date}/notes.txt", "not a csv: never imported")

    run = pipeline.run_import(date)

    states = task_states(run)
    assert str(run.state) == "success", states
    assert [state for state, _ in states["import_file"]] == ["success"] * 3
    assert [state for state, _ in states["verify_file"]] == ["success"] * 3
    items = pipeline.items_of()
    assert len(items) == 30 + 25 + 300
    by_source = {}
    for item in items:
        by_source.setdefault(item["sourceKey"]["S"].rsplit("/", 1)[-1], set()).add(item["importId"]["S"])
    assert set(by_source) == {"small.csv", "packed.csv.gz", "big.csv"}
    (big_import_id,) = by_source["big.csv"]
    big_totals = manifest_totals(pipeline, big_import_id)
    assert big_totals == {"shards": 3, "rows_read": 340, "distinct_keys": 300, "rows_rejected": 0}
    big_jobs = [job["jobId"] for job in pipeline.jobs_named("csv-import-big-csv")]
    described = pipeline.batch.describe_jobs(jobs=big_jobs)["jobs"]
    assert [
        job["arrayProperties"]["size"] for job in described if "size" in job.get("arrayProperties", {})
    ] == [3]
    bucket = pipeline.config.bucket
    for import_ids in by_source.values():
        (import_id,) = import_ids
        marker = pipeline.s3.get_object(
            Bucket=bucket.name, Key=f"{bucket.manifest_prefix}{import_id}/verified.json"
        )
        assert json.loads(marker["Body"].read())["counted"] == len(pipeline.items_of(import_id))

    # A rerun of the partition skips the verified files; reprocess imports them again.
    rerun = pipeline.run_import(date)
    assert task_states(rerun)["list_files"] == [("skipped", 1)]
    reprocessed = pipeline.run_import(date, reprocess=True)
    assert [state for state, _ in task_states(reprocessed)["verify_file"]] == ["success"] * 3


def test_files_of_bad_rows_fail_import_file_at_once_with_the_reject_counts(
    pipeline: Pipeline, capfd: pytest.CaptureFixture[str]
) -> None:
    date = "2026-02-02"
    bad_rows = [["", f"no key {n}", str(n)] for n in range(15)]
    pipeline.land(f"incoming/{date}/bad.csv", csv_text(HEADER, rows("bad", 5) + bad_rows))
    big_bad_rows = [["", f"no key at all {n}", str(n)] for n in range(200)]
    pipeline.land(f"incoming/{date}/worse.csv", csv_text(HEADER, rows("worse", 30) + big_bad_rows))

    run = pipeline.run_import(date)

    states = task_states(run)
    assert str(run.state) == "failed", states
    assert states["import_file"] == [("failed", 1), ("failed", 1)], (
        "bad files must fail without Airflow retries"
    )
    assert states["verify_file"] == [("upstream_failed", 0), ("upstream_failed", 0)]
    (job,) = pipeline.jobs_named("csv-import-bad-csv")
    described = pipeline.batch.describe_jobs(jobs=[job["jobId"]])["jobs"][0]
    assert len(described["attempts"]) == 1, "Batch must not retry exit code 4 either"
    (array_job,) = pipeline.array_jobs_named("csv-import-worse-csv")
    assert array_job["arrayProperties"]["size"] == 3
    output = capfd.readouterr().out
    assert "4 (REJECT_RATIO_EXCEEDED)" in output
    assert "rows_read=20 rows_imported=5 rows_rejected=15" in output
    assert "rows_read=230 rows_imported=30 rows_rejected=200" in output  # summed over the 3 shards
    # The job's own CloudWatch lines reach the task log (awslogs_enabled).
    assert (
        f"csv_importer.progress: summary s3://{pipeline.config.bucket.name}/incoming/{date}/bad.csv" in output
    )


def submit_operator(
    pipeline: Pipeline, key: str, rows_count: int, **overrides: Any
) -> tuple[Any, dict, dict]:
    """A ``BatchSubmitOperator`` for a freshly landed file, as the mapped ``import_file`` would build it."""
    from batch_import.files import ImportSettings, describe_landed_file, plan_imports
    from batch_import.operators import BatchSubmitOperator

    config = pipeline.config
    pipeline.land(key, csv_text(HEADER, rows("retried", rows_count)))
    landed = describe_landed_file(pipeline.s3, bucket_name=config.bucket.name, key=key)
    settings = ImportSettings(
        bucket_name=config.bucket.name,
        landing_prefix=config.bucket.landing_prefix,
        manifest_prefix=config.bucket.manifest_prefix,
        max_reject_ratio=0.0,
        configured_max_reject_ratio=config.import_.max_reject_ratio,
        shard_threshold_bytes=10**9,
        shard_target_bytes=10**9,
        max_shards=1,
    )
    (plan,) = plan_imports([landed], settings, dag_id="import_csv_to_dynamodb", run_id=f"manual__{key}")
    context: dict = {
        "dag": SimpleNamespace(dag_id="import_csv_to_dynamodb"),
        "run_id": f"manual__{key}",
        "ti": mock.MagicMock(),
        "task_instance": mock.MagicMock(),
    }
    container_overrides = {**plan["container_overrides"], **overrides}

    def attempt() -> BatchSubmitOperator:
        return BatchSubmitOperator(
            task_id="import_file",
            job_name=plan["job_name"],
            job_queue=config.batch.job_queue,
            job_definition=config.batch.job_definition,
            container_overrides=container_overrides,
            import_id=plan["import_id"],
            s3_key=key,
            bucket_name=config.bucket.name,
            manifest_prefix=config.bucket.manifest_prefix,
            rejected_prefix=config.bucket.rejected_prefix,
            poll_interval=1,
            region_name=config.aws.region,
        )

    return attempt, plan, context


def test_a_retried_submit_reattaches_to_the_running_job(pipeline: Pipeline) -> None:
    attempt, plan, context = submit_operator(pipeline, "incoming/2026-02-03/retried.csv", 50)

    first = attempt()
    first.submit_job(context)  # the first try submits, then dies before it sees the job finish
    retried_job_id = attempt().execute(context)

    assert retried_job_id == first.job_id
    assert [job["jobId"] for job in pipeline.jobs_named(plan["job_name"])] == [first.job_id]
    assert len(pipeline.items_of(plan["import_id"])) == 50


def test_a_retryable_job_failure_stays_retryable_and_the_retry_submits_anew(pipeline: Pipeline) -> None:
    from airflow.sdk.exceptions import AirflowException

    # `false` exits 1 (UNEXPECTED): Batch retries it (evaluateOnExit), then Airflow may retry.
    attempt, plan, context = submit_operator(pipeline, "incoming/2026-02-03/flaky.csv", 3, command=["false"])

    with pytest.raises(AirflowException, match="a retry may fix this") as failure:
        attempt().execute(context)
    assert not isinstance(failure.value, AirflowFailException)
    with pytest.raises(AirflowException, match="a retry may fix this"):
        attempt().execute(context)  # the failed job is not reattached to: a new one is submitted
    assert len(pipeline.jobs_named(plan["job_name"])) == 2


def test_a_file_overwritten_between_list_files_and_the_job_fails_at_once_and_the_next_run_imports_it(
    pipeline: Pipeline,
) -> None:
    key = "incoming/2026-02-03/overwritten.csv"
    attempt, plan, context = submit_operator(pipeline, key, 4)  # planned for the first version's ETag
    pipeline.land(key, csv_text(HEADER, rows("second", 6)))  # a new version lands before the job starts

    with pytest.raises(AirflowFailException, match="5 \\(OBJECT_CHANGED\\)") as failure:
        attempt().execute(context)
    assert "failed and is not retried" in str(failure.value)
    source = f"s3://{pipeline.config.bucket.name}/{key}"
    assert not [item for item in pipeline.items_of() if item["sourceKey"]["S"] == source], "no row written"

    run = pipeline.run_import("2026-02-03", s3_key=key)  # the next run lists the new version
    assert str(run.state) == "success", task_states(run)
    new_items = [item for item in pipeline.items_of() if item["sourceKey"]["S"] == source]
    assert sorted(item["id"]["S"] for item in new_items) == [f"second-{n:05d}" for n in range(6)]
    assert {item["importId"]["S"] for item in new_items} != {plan["import_id"]}


def test_an_s3_key_outside_the_landing_prefix_is_refused_before_any_job(pipeline: Pipeline) -> None:
    from batch_import.operators import ListLandedFilesOperator

    config = pipeline.config
    jobs_before = pipeline.jobs_named("csv-import-")
    with pytest.raises(ParamValidationError, match="s3_key"):
        pipeline.run_import("2026-02-04", s3_key="manifests/secret.csv")

    # The task re-validates too (a conf that bypassed the form, e.g. with param validation off).
    list_files = ListLandedFilesOperator(
        task_id="list_files",
        bucket_name=config.bucket.name,
        landing_prefix=config.bucket.landing_prefix,
        manifest_prefix=config.bucket.manifest_prefix,
        shard_threshold_bytes=1,
        shard_target_bytes=1,
        max_shards=1,
        default_max_reject_ratio=0.0,
        region_name=config.aws.region,
    )
    escaping_key = "incoming/../manifests/secret.csv"
    with pytest.raises(AirflowFailException, match="not allowed") as refused:
        list_files.execute({"params": {"s3_key": escaping_key}, "run_id": "manual__x"})  # type: ignore[arg-type]
    assert escaping_key in str(refused.value)
    assert pipeline.jobs_named("csv-import-") == jobs_before


def test_a_run_for_one_s3_key_does_not_wait_and_imports_only_that_file(pipeline: Pipeline) -> None:
    key = pipeline.land("incoming/adhoc/one.csv", csv_text(HEADER, rows("one", 12)))
    pipeline.land("incoming/2026-02-06/other.csv", csv_text(HEADER, rows("other", 7)))

    run = pipeline.run_import("2026-02-06", s3_key=key)

    states = task_states(run)
    assert str(run.state) == "success", states
    assert states["import_file"] == [("success", 1)]
    sources = {
        item["sourceKey"]["S"]
        for item in pipeline.items_of()
        if item["id"]["S"].startswith(("one-", "other-"))
    }
    assert sources == {f"s3://{pipeline.config.bucket.name}/{key}"}


def test_a_day_without_files_is_skipped_naming_the_date(
    pipeline: Pipeline, capfd: pytest.CaptureFixture[str]
) -> None:
    run = pipeline.run_import("2026-02-07")

    states = task_states(run)
    assert states["wait_for_files"][0][0] == "skipped", states
    assert states["list_files"][0][0] == "skipped"
    assert "No .csv or .csv.gz file landed for 2026-02-07" in capfd.readouterr().out


def test_a_run_without_logical_date_imports_the_partition_of_its_run_after_date(pipeline: Pipeline) -> None:
    pipeline.land("incoming/2026-02-08/late.csv", csv_text(HEADER, rows("late", 9)))

    run = pipeline.run_import("2026-02-08", without_logical_date=True)

    assert run.logical_date is None
    states = task_states(run)
    assert str(run.state) == "success", states
    late_items = [item for item in pipeline.items_of() if item["id"]["S"].startswith("late-")]
    assert len(late_items) == 9
