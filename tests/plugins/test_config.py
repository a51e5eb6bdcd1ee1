"""The pipeline config: the checked-in file loads, env overrides win, bad values are refused by name."""

from __future__ import annotations

from pathlib import Path

import pytest

from batch_import.config import DEFAULT_CONFIG_PATH, ConfigError, load_config


def test_checked_in_config_loads() -> None:
    config = load_config(environ={})
    assert config.source == str(DEFAULT_CONFIG_PATH)
    assert config.bucket.landing_prefix == "incoming/"
    assert config.table.key_schema == [(config.table.partition_key, "HASH", config.table.partition_key_type)]
    assert config.batch.is_fargate
    assert config.schedule.catchup is False


def test_environment_overrides_win_and_are_typed() -> None:
    config = load_config(
        environ={
            "CSV_IMPORT__AWS__REGION": "eu-west-1",
            "CSV_IMPORT__BATCH__MAX_VCPUS": "64",
            "CSV_IMPORT__BATCH__SUBNETS": "subnet-a, subnet-b",
            "CSV_IMPORT__SCHEDULE__CATCHUP": "true",
            "CSV_IMPORT__IMPORT__MAX_REJECT_RATIO": "0.25",
            "CSV_IMPORT__TABLE__SORT_KEY": "ts",
        }
    )
    assert config.aws.region == "eu-west-1"
    assert config.batch.max_vcpus == 64
    assert config.batch.subnets == ("subnet-a", "subnet-b")
    assert config.schedule.catchup is True
    assert config.import_.max_reject_ratio == 0.25
    assert [name for name, _, _ in config.table.key_schema] == [config.table.partition_key, "ts"]


@pytest.mark.parametrize(
    ("env", "message"),
    [
        pytest.param({"CSV_IMPORT__BATCH__MAX_VCPUS": "many"}, "batch.max_vcpus", id="not-an-int"),
        pytest.param({"CSV_IMPORT__SCHEDULE__CATCHUP": "perhaps"}, "schedule.catchup", id="not-a-bool"),
        pytest.param({"CSV_IMPORT__BATCH__COMPUTE_TYPE": "LAMBDA"}, "batch.compute_type", id="compute-type"),
        pytest.param(
            {"CSV_IMPORT__TABLE__PARTITION_KEY_TYPE": "B"}, "table.partition_key_type", id="key-type"
        ),
        pytest.param(
            {"CSV_IMPORT__BUCKET__LANDING_PREFIX": "incoming"}, "bucket.landing_prefix", id="prefix"
        ),
        pytest.param({"CSV_IMPORT__BUCKET__REJECTED_PREFIX": "incoming/rej/"}, "overlap", id="overlap"),
        pytest.param({"CSV_IMPORT__IMPORT__MAX_REJECT_RATIO": "2"}, "max_reject_ratio", id="ratio"),
    ],
)
def test_bad_values_are_refused_by_name(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(environ=env)


def test_unknown_key_and_missing_file_are_named(tmp_path: Path) -> None:
    bad = tmp_path / "pipeline.toml"
    bad.write_text(DEFAULT_CONFIG_PATH.read_text() + "\n[extra]\nx = 1\n")
    with pytest.raises(ConfigError, match="unknown sections"):
        load_config(bad, environ={})
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.toml", environ={})
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(environ={"CSV_IMPORT_CONFIG": str(tmp_path / "nope.toml")})


def test_job_environment_entries_must_be_name_value() -> None:
    config = load_config(
        environ={"CSV_IMPORT__BATCH__JOB_ENVIRONMENT": "AWS_ENDPOINT_URL=http://moto:5000,A_B=x=y"}
    )
    assert config.batch.job_environment == ("AWS_ENDPOINT_URL=http://moto:5000", "A_B=x=y")
    with pytest.raises(ConfigError, match="batch.job_environment"):
        load_config(environ={"CSV_IMPORT__BATCH__JOB_ENVIRONMENT": "no-equals-sign"})
