"""Least privilege: the job works under the role provisioning creates, and nothing else.

A SEPARATE local endpoint process runs with moto's IAM enforcement on (``INITIAL_NO_AUTH_ACTION_COUNT``: the
first 3 requests create an admin user and its key, every later request is authenticated and authorized).
Provisioning's own functions create the bucket, the table and the job role with admin credentials; the job
then runs as the real ``csv-importer`` command under the job role's temporary credentials (sts:AssumeRole).

Two gaps of moto's enforcement are bridged in the endpoint process, both outside the project's code:
moto authorizes DynamoDB calls against resource ``*`` (so a policy scoped to one table could never match),
so the table's ARN is derived from the request as AWS does; and the role's trust policy names the admin user
instead of ecs-tasks (moto's trust check fails on a Service principal) so the test can assume it. The role's
permissions policy is exactly provisioning's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from batch_import.provisioning import iam as iam_resources
from batch_import.provisioning.account import describe_account
from batch_import.provisioning.dynamodb import ensure_table
from batch_import.provisioning.s3 import ensure_bucket

PROJECT_ROOT = Path(__file__).resolve().parents[2]
REGION = "us-east-1"
BUCKET, OTHER_BUCKET = "least-privilege-landing", "least-privilege-other"
TABLE, OTHER_TABLE = "least-privilege-items", "least-privilege-other-items"
ROLE = "least-privilege-job-role"
# Overridden bookkeeping prefixes (config bucket.rejected_prefix / manifest_prefix): the role allows these only.
LANDING, REJECTED, MANIFESTS = "incoming/", "audit/rejected/", "audit/manifests/"
DENIED = (403, "AccessDeniedException")

pytestmark = pytest.mark.slow

# Runs in the endpoint process: authorize DynamoDB calls against the table they name, as AWS does.
_ENDPOINT = """
import json, sys
from moto.dynamodb.responses import DynamoHandler
from moto.utilities.utils import get_partition

def _determine_resource(self):
    body = self.body
    if not isinstance(body, dict):
        try:
            body = json.loads(body or "{}")
        except ValueError:
            return "*"
    names = [body["TableName"]] if "TableName" in body else list(body.get("RequestItems", {}))
    if len(names) != 1:
        return "*"
    return f"arn:{get_partition(self.region)}:dynamodb:{self.region}:{self.current_account}:table/{names[0]}"

DynamoHandler._determine_resource = _determine_resource
from include.local_aws.__main__ import main
sys.exit(main(["--port", "0", "--log-level", "WARNING"]))
"""


@pytest.fixture(scope="module")
def enforcing_endpoint() -> Iterator[str]:
    env = {**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "3"}
    server = subprocess.Popen(
        [sys.executable, "-c", _ENDPOINT], cwd=PROJECT_ROOT, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    try:
        assert server.stdout is not None
        url = server.stdout.readline().strip()
        assert url.startswith("http://"), f"endpoint did not start (exit {server.poll()})"
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def _client(service: str, url: str, credentials: dict[str, str]) -> Any:
    return boto3.client(service, endpoint_url=url, region_name=REGION, **credentials)


@pytest.fixture(scope="module")
def provisioned(enforcing_endpoint: str) -> dict[str, Any]:
    url = enforcing_endpoint
    bootstrap = {"aws_access_key_id": "bootstrap", "aws_secret_access_key": "bootstrap"}
    iam = _client("iam", url, bootstrap)
    # The only 3 unauthenticated requests.
    admin_arn = iam.create_user(UserName="admin")["User"]["Arn"]
    iam.put_user_policy(
        UserName="admin",
        PolicyName="admin",
        PolicyDocument=json.dumps(
            {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
        ),
    )
    key = iam.create_access_key(UserName="admin")["AccessKey"]
    admin = {"aws_access_key_id": key["AccessKeyId"], "aws_secret_access_key": key["SecretAccessKey"]}

    s3, dynamodb, iam = (_client(name, url, admin) for name in ("s3", "dynamodb", "iam"))
    for bucket in (BUCKET, OTHER_BUCKET):
        ensure_bucket(s3, bucket_name=bucket, region=REGION)
    for table in (TABLE, OTHER_TABLE):
        ensure_table(
            dynamodb, table_name=table, key_schema=[("id", "HASH", "S")],
            poll_seconds=0.1,
        )  # fmt: skip
    account = describe_account(_client("sts", url, admin), REGION)
    iam_resources.ensure_role(
        iam,
        resource="job_role",
        role_name=ROLE,
        path="/csv-import/",
        trusted_service=iam_resources.ECS_TASKS,
        inline_policy_name=iam_resources.JOB_POLICY_NAME,
        inline_policy=iam_resources.job_role_policy(
            account, bucket_name=BUCKET, landing_prefix=LANDING, rejected_prefix=REJECTED,
            manifest_prefix=MANIFESTS, table_name=TABLE,
        ),
    )  # fmt: skip
    # Stand in for ecs-tasks (moto's trust check fails on a Service principal): the admin may assume the role.
    trust = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"AWS": admin_arn}, "Action": "sts:AssumeRole"}],
    }
    iam.update_assume_role_policy(RoleName=ROLE, PolicyDocument=json.dumps(trust))

    near_limit = "y" * 406_000  # DynamoDB (moto) refuses it: the job reads the key back with GetItem
    body = f"id,text\na,one\nb,{near_limit}\nc,three\n,no key\n".encode()
    s3.put_object(Bucket=BUCKET, Key=f"{LANDING}2026-03-01/data.csv", Body=body)
    s3.put_object(Bucket=BUCKET, Key="private/secret.csv", Body=b"id,text\nsecret,1\n")
    s3.put_object(Bucket=OTHER_BUCKET, Key=f"{LANDING}2026-03-01/data.csv", Body=b"id,text\nother,1\n")

    role_arn = iam.get_role(RoleName=ROLE)["Role"]["Arn"]
    assumed = _client("sts", url, admin).assume_role(RoleArn=role_arn, RoleSessionName="csv-import-test")
    creds = assumed["Credentials"]
    job = {
        "aws_access_key_id": creds["AccessKeyId"],
        "aws_secret_access_key": creds["SecretAccessKey"],
        "aws_session_token": creds["SessionToken"],
    }
    return {"url": url, "admin": admin, "job": job}


def _run_job(
    provisioned: dict[str, Any],
    *,
    bucket: str,
    key: str,
    table: str,
    prefixes: tuple[str, str] = (MANIFESTS, REJECTED),
) -> subprocess.CompletedProcess[str]:
    job = provisioned["job"]
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "AWS_ENDPOINT_URL": provisioned["url"],
        "AWS_ACCESS_KEY_ID": job["aws_access_key_id"],
        "AWS_SECRET_ACCESS_KEY": job["aws_secret_access_key"],
        "AWS_SESSION_TOKEN": job["aws_session_token"],
        "AWS_DEFAULT_REGION": REGION,
        "AWS_MAX_ATTEMPTS": "2",
    }
    return subprocess.run(
        ["csv-importer", "--bucket", bucket, "--key", key, "--table", table, "--max-reject-ratio", "1",
         "--manifest-prefix", prefixes[0], "--rejected-prefix", prefixes[1]],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def _error_code(call: Any) -> str:
    with pytest.raises(ClientError) as raised:
        call()
    return raised.value.response["Error"]["Code"]


def _dynamodb_refusal(call: Any) -> tuple[int, str]:
    """HTTP status and error code of a refused DynamoDB call.

    moto answers DynamoDB refusals with IAM's XML error body, which botocore's JSON parser reports by its
    HTTP status; AWS says ``AccessDeniedException``. Both mean the same refusal, and nothing else gives 403.
    """
    with pytest.raises(ClientError) as raised:
        call()
    response = raised.value.response
    code = response["Error"]["Code"]
    return response["ResponseMetadata"]["HTTPStatusCode"], "AccessDeniedException" if code == "403" else code


def test_enforcement_is_on(provisioned: dict[str, Any]) -> None:
    stranger = {"aws_access_key_id": "not-a-known-key", "aws_secret_access_key": "nobody"}
    status, _code = _dynamodb_refusal(lambda: _client("dynamodb", provisioned["url"], stranger).list_tables())
    assert status == 403


def test_the_job_imports_under_the_job_role(provisioned: dict[str, Any]) -> None:
    done = _run_job(provisioned, bucket=BUCKET, key=f"{LANDING}2026-03-01/data.csv", table=TABLE)

    assert done.returncode == 0, done.stderr
    admin_dynamodb = _client("dynamodb", provisioned["url"], provisioned["admin"])
    items = admin_dynamodb.scan(TableName=TABLE)["Items"]
    assert sorted(item["id"]["S"] for item in items) == ["a", "c"]
    admin_s3 = _client("s3", provisioned["url"], provisioned["admin"])
    manifests = admin_s3.list_objects_v2(Bucket=BUCKET, Prefix=MANIFESTS)["Contents"]
    (manifest,) = [
        json.loads(admin_s3.get_object(Bucket=BUCKET, Key=m["Key"])["Body"].read()) for m in manifests
    ]
    assert (manifest["rows_read"], manifest["rows_imported"], manifest["rows_rejected"]) == (4, 2, 2)
    assert manifest["distinct_keys"] == 2


def test_the_job_role_cannot_write_another_table(provisioned: dict[str, Any]) -> None:
    dynamodb = _client("dynamodb", provisioned["url"], provisioned["job"])
    item = {"id": {"S": "intruder"}}
    assert _dynamodb_refusal(lambda: dynamodb.put_item(TableName=OTHER_TABLE, Item=item)) == DENIED
    batch = {OTHER_TABLE: [{"PutRequest": {"Item": item}}]}
    assert _dynamodb_refusal(lambda: dynamodb.batch_write_item(RequestItems=batch)) == DENIED
    # Nor delete from or scan its own table: it only writes items.
    assert _dynamodb_refusal(lambda: dynamodb.delete_item(TableName=TABLE, Key=item)) == DENIED
    assert _dynamodb_refusal(lambda: dynamodb.scan(TableName=TABLE)) == DENIED
    # ... while the same credentials may describe and write their own table.
    dynamodb.put_item(TableName=TABLE, Item={"id": {"S": "allowed"}})

    done = _run_job(provisioned, bucket=BUCKET, key=f"{LANDING}2026-03-01/data.csv", table=OTHER_TABLE)
    assert done.returncode == 3, done.stderr
    assert (
        done.stderr.strip()
        .splitlines()[-1]
        .endswith(
            f"DynamoDB table {OTHER_TABLE!r}: DescribeTable denied (AccessDeniedException) (a retry cannot fix this)"
        )
    )
    admin_dynamodb = _client("dynamodb", provisioned["url"], provisioned["admin"])
    assert admin_dynamodb.scan(TableName=OTHER_TABLE)["Items"] == []


def test_the_job_role_cannot_read_another_bucket_or_prefix(provisioned: dict[str, Any]) -> None:
    s3 = _client("s3", provisioned["url"], provisioned["job"])
    other_bucket = f"{LANDING}2026-03-01/data.csv"
    assert _error_code(lambda: s3.get_object(Bucket=OTHER_BUCKET, Key=other_bucket)) == "AccessDenied"
    assert _error_code(lambda: s3.get_object(Bucket=BUCKET, Key="private/secret.csv")) == "AccessDenied"
    # Nor overwrite a landing file: it writes only rejected rows and manifests.
    landing = f"{LANDING}2026-03-01/data.csv"
    assert _error_code(lambda: s3.put_object(Bucket=BUCKET, Key=landing, Body=b"x")) == "AccessDenied"

    for bucket, key in ((OTHER_BUCKET, other_bucket), (BUCKET, "private/secret.csv")):
        done = _run_job(provisioned, bucket=bucket, key=key, table=TABLE)
        assert done.returncode == 3, done.stderr
        assert (
            done.stderr.strip()
            .splitlines()[-1]
            .endswith(f"s3://{bucket}/{key}: access denied reading the object (a retry cannot fix this)")
        )


def test_the_job_writes_its_bookkeeping_only_under_the_prefixes_its_role_allows(
    provisioned: dict[str, Any],
) -> None:
    # The same import pointed at the default prefixes, which this deployment's role does not grant, is refused.
    done = _run_job(
        provisioned, bucket=BUCKET, key=f"{LANDING}2026-03-01/data.csv", table=TABLE,
        prefixes=("manifests/", "rejected/"),
    )  # fmt: skip
    assert done.returncode != 0
    assert "AccessDenied" in done.stderr
    admin_s3 = _client("s3", provisioned["url"], provisioned["admin"])
    listed = admin_s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])
    assert not [o["Key"] for o in listed if o["Key"].startswith(("manifests/", "rejected/"))]
