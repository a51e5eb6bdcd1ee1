"""Params from the trigger form or the REST API cannot make a job read outside the landing prefix or write
another table.

Each conf goes the way a triggered run's conf goes: Airflow's own param validation on the serialized DAG (the
object the API server holds; ``create_dagrun`` runs ``params.deep_merge(conf).validate()``), then the real
``list_files`` task against the local endpoint, which plans the Batch jobs. Whatever passes both must plan a
job that reads one object under the landing prefix of the configured bucket and writes the configured table.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from batch_import.config import load_config

pytestmark = pytest.mark.slow

CONFIG = load_config()
DAG_FILE = Path(__file__).resolve().parents[2] / "dags" / "import_csv_to_dynamodb.py"
LANDING = CONFIG.bucket.landing_prefix
HOSTILE_KEYS = [
    "../manifests/x.csv",
    f"{LANDING}../manifests/x.csv",
    f"{LANDING}2026-01-01/../../manifests/x.csv",
    f"{LANDING}./2026-01-01/a.csv",
    f"{LANDING}2026-01-01//a.csv",
    f"/{LANDING}2026-01-01/a.csv",
    f"{LANDING}/2026-01-01/a.csv",
    "/etc/passwd.csv",
    "manifests/secret.csv",
    "rejected/x.csv",
    f"s3://another-bucket/{LANDING}2026-01-01/a.csv",
    f"s3://{CONFIG.bucket.name}/manifests/a.csv",
    f"{LANDING.upper()}2026-01-01/a.csv",
    f"{LANDING}2026-01-01/a.csv\n",
    f"{LANDING}2026-01-01/a.csv\x00.csv",
    f"{LANDING}2026-01-01/a.txt",
    f"{LANDING}2026-01-01/..",
    f"{LANDING}..",
    "",
    " ",
]


@functools.cache
def _import_dag() -> Any:
    spec = importlib.util.spec_from_file_location("import_csv_to_dynamodb", DAG_FILE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.dag


@pytest.fixture(scope="module")
def serialized_dag() -> Any:
    from airflow.serialization.serialized_objects import DagSerialization

    return DagSerialization.from_dict(DagSerialization.to_dict(_import_dag()))


def _list_files_operator() -> Any:
    return _import_dag().get_task("list_files")


def _landed(local_aws: Any) -> Any:
    s3 = boto3.client("s3", endpoint_url=local_aws.url)
    if CONFIG.bucket.name not in {b["Name"] for b in s3.list_buckets()["Buckets"]}:
        s3.create_bucket(Bucket=CONFIG.bucket.name)
        s3.create_bucket(Bucket="another-bucket")
    return s3


def _run_conf(serialized_dag: Any, local_aws: Any, conf: dict[str, Any]) -> list[dict[str, Any]] | str:
    """The planned jobs for ``conf``, or where it was refused: 'params' or 'list_files'."""
    from airflow.sdk.exceptions import AirflowFailException, ParamValidationError

    try:
        params = serialized_dag.params.deep_merge(conf).validate()
    except ParamValidationError:
        return "params"
    s3 = _landed(local_aws)
    key = params.get("s3_key")
    if isinstance(key, str) and key:
        # Land an object at exactly the requested key (and at what it might resolve to), so a refusal is
        # never just "does not exist".
        with contextlib.suppress(ClientError):  # some keys cannot even be stored: nothing to land then
            s3.put_object(
                Bucket=CONFIG.bucket.name,
                Key=key.removeprefix(f"s3://{CONFIG.bucket.name}/"),
                Body=b"id\n1\n",
            )
    try:
        context = {"params": params, "run_id": "manual__safe-params", "dag": _import_dag()}
        return _list_files_operator().execute(context)
    except AirflowFailException:
        return "list_files"


def _assert_confined(plans: list[dict[str, Any]]) -> None:
    for plan in plans:
        key = plan["s3_key"]
        assert key.startswith(LANDING)
        assert all(segment not in ("", ".", "..") for segment in key[len(LANDING) :].split("/"))
        assert not any(ord(char) < 32 for char in key)
        environment = {e["name"]: e["value"] for e in plan["container_overrides"]["environment"]}
        # The bucket and table come from the job definition alone: no override can point the job elsewhere.
        assert "bucket_name" not in environment
        assert "table_name" not in environment
        assert environment["key"] == key


@pytest.mark.parametrize("s3_key", HOSTILE_KEYS)
def test_hostile_s3_keys_are_refused_before_any_job_is_planned(
    serialized_dag: Any, local_aws: Any, s3_key: str
) -> None:
    outcome = _run_conf(serialized_dag, local_aws, {"s3_key": s3_key})
    if s3_key.strip() == "":
        # An empty key means "the run's partition": no single-object request, nothing outside it.
        assert outcome == "params" or isinstance(outcome, list)
        _assert_confined(outcome if isinstance(outcome, list) else [])
        return
    assert outcome in ("params", "list_files"), f"{s3_key!r} was planned: {outcome}"


def test_a_percent_encoded_dot_segment_is_a_literal_key_under_the_prefix(
    serialized_dag: Any, local_aws: Any
) -> None:
    # S3 never URL-decodes a key: "%2e%2e" is three literal characters, so this names an object in the partition.
    key = f"{LANDING}2026-01-01/%2e%2e/a.csv"
    plans = _run_conf(serialized_dag, local_aws, {"s3_key": key})
    assert isinstance(plans, list)
    assert [plan["s3_key"] for plan in plans] == [key]
    _assert_confined(plans)


def test_conf_cannot_override_the_table_bucket_or_prefix(serialized_dag: Any, local_aws: Any) -> None:
    key = f"{LANDING}2026-01-01/orders.csv"
    conf = {
        "s3_key": key,
        "table_name": "another-table",
        "table": "another-table",
        "bucket_name": "another-bucket",
        "landing_prefix": "",
        "container_overrides": {"environment": [{"name": "table_name", "value": "another-table"}]},
    }
    plans = _run_conf(serialized_dag, local_aws, conf)
    assert isinstance(plans, list), plans
    assert [plan["s3_key"] for plan in plans] == [key]
    _assert_confined(plans)


_KEY_PARTS = st.sampled_from(
    ["..", ".", "", "a", "2026-01-01", "%2e", "\x00", "\n", " ", "manifests", "x.csv", "x.csv.gz"]
)


@settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    prefix=st.sampled_from(["", LANDING, f"/{LANDING}", f"s3://{CONFIG.bucket.name}/{LANDING}", "s3://x/"]),
    parts=st.lists(_KEY_PARTS, min_size=1, max_size=4),
)
@example(prefix=LANDING, parts=["2026-01-01", "x.csv"])
def test_generated_keys_are_refused_or_confined(
    serialized_dag: Any, local_aws: Any, prefix: str, parts: list[str]
) -> None:
    outcome = _run_conf(serialized_dag, local_aws, {"s3_key": prefix + "/".join(parts)})
    if isinstance(outcome, list):
        _assert_confined(outcome)
