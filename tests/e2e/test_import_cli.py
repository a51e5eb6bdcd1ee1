"""The CLI path a user takes: ``python -m include.local_aws``, then ``airflow dags test`` of both DAGs.

Only ``aws_default`` points at the endpoint (``extra.endpoint_url``), the config is the checked-in default,
Airflow runs from the project's virtual environment with a throw-away AIRFLOW_HOME, and the Batch jobs are
real ``csv-importer`` processes of the endpoint.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

from batch_import.provisioning.iam import JOB_POLICY_NAME
from tests.e2e.conftest import csv_text
from tests.fixtures.airflow_cli import airflow_cli_env, run_airflow

pytestmark = pytest.mark.slow

PROJECT_ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
REGION = "us-east-1"


@pytest.fixture
def endpoint_url(tmp_path: Path) -> Iterator[str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("CSV_IMPORT__", "AWS_ENDPOINT"))
    }
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    server = subprocess.Popen(
        [sys.executable, "-m", "include.local_aws", "--port", "0"],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=(tmp_path / "local_aws.log").open("w"),
        text=True,
        start_new_session=True,
    )
    try:
        assert server.stdout is not None
        url = server.stdout.readline().strip()
        assert url.startswith("http://"), (
            f"local endpoint did not start: {(tmp_path / 'local_aws.log').read_text()}"
        )
        yield url
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


def airflow(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return run_airflow(env, *args, timeout=300)


def test_provision_then_import_from_the_command_line(tmp_path: Path, endpoint_url: str) -> None:
    from batch_import.config import load_config

    config = load_config(environ={})
    env = airflow_cli_env(tmp_path / "airflow_home", endpoint_url, region=REGION)
    migrated = airflow(env, "db", "migrate")
    assert migrated.returncode == 0, migrated.stderr[-3000:]

    provisioned = airflow(env, "dags", "test", "provision_batch_environment")
    assert provisioned.returncode == 0, provisioned.stdout[-3000:] + provisioned.stderr[-3000:]

    s3 = boto3.client("s3", endpoint_url=endpoint_url, region_name=REGION)
    dynamodb = boto3.client("dynamodb", endpoint_url=endpoint_url, region_name=REGION)
    header = ["id", "name"]
    s3.put_object(
        Bucket=config.bucket.name,
        Key="incoming/2026-03-01/customers.csv",
        Body=csv_text(header, [[f"c-{n}", f"customer {n}"] for n in range(40)]).encode(),
    )
    s3.put_object(
        Bucket=config.bucket.name,
        Key="incoming/2026-03-02/mostly-bad.csv",
        Body=csv_text(header, [["b-1", "fine"]] + [["", f"no key {n}"] for n in range(9)]).encode(),
    )

    imported = airflow(env, "dags", "test", "import_csv_to_dynamodb", "2026-03-01")
    output = imported.stdout + imported.stderr
    assert imported.returncode == 0, output[-5000:]
    assert "Verified import" in output
    count = dynamodb.scan(TableName=config.table.name, Select="COUNT")["Count"]
    assert count == 40

    failed = airflow(env, "dags", "test", "import_csv_to_dynamodb", "2026-03-02")
    output = failed.stdout + failed.stderr
    assert "rows_read=10 rows_imported=1 rows_rejected=9" in output, output[-5000:]
    assert "REJECT_RATIO_EXCEEDED" in output
    assert failed.returncode != 0
    assert "DagRun Finished: dag_id=import_csv_to_dynamodb, logical_date=2026-03-02" in output
    assert "state=failed" in output


def test_overridden_manifest_and_rejected_prefixes_hold_end_to_end(tmp_path: Path, endpoint_url: str) -> None:
    """Both bookkeeping prefixes overridden: the job definition hands them to the job, the job role's policy
    grants them, the job writes there, and verification finds the manifests and writes its marker there."""
    from batch_import.config import load_config

    settings = {
        "CSV_IMPORT__BUCKET__MANIFEST_PREFIX": "audit/manifests/",
        "CSV_IMPORT__BUCKET__REJECTED_PREFIX": "audit/rejected/",
        "CSV_IMPORT__IMPORT__MAX_REJECT_RATIO": "0.5",
    }
    config = load_config(environ=settings)
    env = airflow_cli_env(tmp_path / "airflow_home", endpoint_url, region=REGION, settings=settings)
    migrated = airflow(env, "db", "migrate")
    assert migrated.returncode == 0, migrated.stderr[-3000:]
    provisioned = airflow(env, "dags", "test", "provision_batch_environment")
    assert provisioned.returncode == 0, provisioned.stdout[-3000:] + provisioned.stderr[-3000:]

    s3 = boto3.client("s3", endpoint_url=endpoint_url, region_name=REGION)
    key = "incoming/2026-03-03/orders.csv"
    s3.put_object(
        Bucket=config.bucket.name,
        Key=key,
        Body=csv_text(["id", "name"], [[f"o-{n}", "fine"] for n in range(6)] + [["", "no key"]]).encode(),
    )
    imported = airflow(env, "dags", "test", "import_csv_to_dynamodb", "2026-03-03")
    output = imported.stdout + imported.stderr
    assert imported.returncode == 0, output[-5000:]
    assert "Verified import" in output

    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=config.bucket.name)["Contents"]]
    assert not [k for k in keys if k.startswith(("manifests/", "rejected/"))], keys
    assert len([k for k in keys if k.startswith("audit/manifests/") and k.endswith("shard-0-of-1.json")]) == 1
    assert len([k for k in keys if k.startswith("audit/manifests/") and k.endswith("verified.json")]) == 1
    (rejected,) = [k for k in keys if k.startswith("audit/rejected/")]
    body = s3.get_object(Bucket=config.bucket.name, Key=rejected)["Body"].read().decode()
    assert "key 'id' is empty" in body
    role_policy = boto3.client("iam", endpoint_url=endpoint_url, region_name=REGION).get_role_policy(
        RoleName=config.iam.job_role, PolicyName=JOB_POLICY_NAME
    )["PolicyDocument"]
    resources = json.dumps(role_policy)
    assert f"{config.bucket.name}/audit/manifests/*" in resources
    assert f"{config.bucket.name}/audit/rejected/*" in resources
    assert f"{config.bucket.name}/manifests/*" not in resources
