"""The job's inputs are described once (csv_importer.inputs): the DAG's container overrides plus the job
definition's environment, parsed by the job, give exactly the settings the plan and the config say."""

from __future__ import annotations

import re

import pytest

from batch_import.config import load_config
from batch_import.files import ImportSettings, plan_imports
from batch_import.provisioning.batch import job_environment_from_config
from csv_importer.inputs import JOB_INPUTS, container_overrides, deployment_environment
from csv_importer.settings import ImportSettings as JobSettings
from csv_importer.settings import build_parser, load_settings


def _batch_environment(definition: dict[str, str], overrides: dict) -> dict[str, str]:
    """What AWS Batch hands the container: the job definition's environment, overridden per submit."""
    return {**definition, **{pair["name"]: pair["value"] for pair in overrides["environment"]}}


@pytest.mark.parametrize("run_ratio", [None, 0.25])
def test_overrides_plus_the_job_definition_parse_into_the_planned_settings(
    monkeypatch: pytest.MonkeyPatch, run_ratio: float | None
) -> None:
    monkeypatch.setenv("CSV_IMPORT__IMPORT__COLUMN_TYPES", "price:N,active:BOOL")
    monkeypatch.setenv("CSV_IMPORT__IMPORT__EMPTY_CELLS", "null")
    monkeypatch.setenv("CSV_IMPORT__BUCKET__MANIFEST_PREFIX", "audit/manifests/")
    monkeypatch.setenv("CSV_IMPORT__IMPORT__MAX_REJECT_RATIO", "0.1")
    config = load_config()
    settings = ImportSettings(
        bucket_name=config.bucket.name,
        landing_prefix=config.bucket.landing_prefix,
        manifest_prefix=config.bucket.manifest_prefix,
        max_reject_ratio=config.import_.max_reject_ratio if run_ratio is None else run_ratio,
        configured_max_reject_ratio=config.import_.max_reject_ratio,
        shard_threshold_bytes=100,
        shard_target_bytes=100,
        max_shards=4,
    )
    landed = {"key": f"{config.bucket.landing_prefix}2026-01-02/a.csv", "size": 250, "etag": '"e-1"'}
    (plan,) = plan_imports([landed], settings, dag_id="d", run_id="r")  # type: ignore[list-item]
    environment = _batch_environment(job_environment_from_config(config), plan["container_overrides"])
    environment["AWS_BATCH_JOB_ARRAY_INDEX"] = "2"

    parsed = load_settings([], environment)

    assert parsed == JobSettings(
        bucket=config.bucket.name,
        key=landed["key"],
        table=config.table.name,
        import_id=plan["import_id"],
        expected_etag='"e-1"',
        max_reject_ratio=0.1 if run_ratio is None else run_ratio,
        column_types={"price": "N", "active": "BOOL"},
        empty_cells="null",
        manifest_prefix="audit/manifests/",
        rejected_prefix=config.bucket.rejected_prefix,
        shard_count=plan["shard_count"],
        shard_index=2,
        writer_concurrency=config.import_.writer_concurrency,
    )
    assert plan["shard_count"] == 3


def test_every_input_has_one_env_one_flag_and_a_settings_field() -> None:
    fields = set(JobSettings.__dataclass_fields__)
    assert {job_input.name for job_input in JOB_INPUTS} == fields
    assert len({job_input.env for job_input in JOB_INPUTS}) == len(JOB_INPUTS)
    flags = {
        action.option_strings[0] for action in build_parser()._actions if action.option_strings[0] != "-h"
    }
    assert flags == {job_input.flag for job_input in JOB_INPUTS}


def test_values_are_formatted_once_and_exactly() -> None:
    assert deployment_environment(
        {"max_reject_ratio": 0.1, "column_types": {"a": "N"}, "writer_concurrency": 4}
    ) == {
        "max_reject_ratio": "0.1",
        "column_types": "a:N",
        "writer_concurrency": "4",
    }
    tiny = 1e-17
    assert (
        float(deployment_environment({"max_reject_ratio": tiny})["max_reject_ratio"]) == tiny
    )  # never %g-rounded


def test_inputs_of_the_wrong_scope_or_unknown_are_refused() -> None:
    with pytest.raises(ValueError, match="'table' is a deployment input"):
        container_overrides({"table": "another-table"})
    with pytest.raises(KeyError, match=re.escape("'tabel' is not an input")):
        deployment_environment({"tabel": "x"})
