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

Per feed: two feeds of a generated config get their job roles with the policies the provisioning DAG's
``<feed>.ensure_job_role`` tasks build; feed A's job, under A's role, imports A's file into A's table and is
refused B's table, B's files and B's bookkeeping prefixes.
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


# --- one job role per feed ------------------------------------------------------------------------------------

FEED_BUCKET = "least-privilege-feeds"


def _feed_roles_from_the_provisioning_dag(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Any]:
    """The config of two feeds and the provisioning DAG built from it (as the DAG processor builds it)."""
    import importlib.util

    from batch_import.config import load_config
    from tests.fixtures.feeds import THREE_FEEDS, write_feeds_config

    path = write_feeds_config(tmp_path_factory.mktemp("feeds") / "pipeline.toml", THREE_FEEDS[:2])
    environ = {"CSV_IMPORT_CONFIG": str(path), "CSV_IMPORT__BUCKET__NAME": FEED_BUCKET}
    with pytest.MonkeyPatch.context() as patch:
        for name in [name for name in os.environ if name.startswith("CSV_IMPORT")]:
            patch.delenv(name)
        for name, value in environ.items():
            patch.setenv(name, value)
        spec = importlib.util.spec_from_file_location(
            "provision_for_feed_roles", PROJECT_ROOT / "dags" / "provision_batch_environment.py"
        )
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return load_config(environ=environ), module.dag


@pytest.fixture(scope="module")
def feeds(provisioned: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Feeds ``orders`` (A) and ``customers`` (B): bucket, tables, job roles, one landed file each."""
    url, admin = provisioned["url"], provisioned["admin"]
    config, dag = _feed_roles_from_the_provisioning_dag(tmp_path_factory)
    s3, dynamodb, iam, sts = (_client(name, url, admin) for name in ("s3", "dynamodb", "iam", "sts"))
    ensure_bucket(s3, bucket_name=config.bucket.name, region=REGION)
    account = describe_account(sts, REGION)
    admin_arn = sts.get_caller_identity()["Arn"]
    credentials: dict[str, dict[str, str]] = {}
    for feed in config.feeds:
        ensure_table(
            dynamodb, table_name=feed.table.name, key_schema=feed.table.key_schema,
            import_id_index=feed.table.import_id_index, poll_seconds=0.1,
        )  # fmt: skip
        task = dag.get_task(f"{feed.name}.ensure_job_role")  # the arguments provisioning really uses
        assert task.role_name == feed.job_role
        iam_resources.ensure_role(
            iam,
            resource="job_role",
            role_name=task.role_name,
            path=task.path,
            trusted_service=iam_resources.ECS_TASKS,
            inline_policy_name=iam_resources.JOB_POLICY_NAME,
            inline_policy=iam_resources.job_role_policy(
                account, bucket_name=task.bucket_name, landing_prefix=task.landing_prefix,
                rejected_prefix=task.rejected_prefix, manifest_prefix=task.manifest_prefix,
                table_name=task.table_name,
            ),
        )  # fmt: skip
        trust = {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Principal": {"AWS": admin_arn}, "Action": "sts:AssumeRole"}],
        }
        iam.update_assume_role_policy(RoleName=feed.job_role, PolicyDocument=json.dumps(trust))
        assumed = sts.assume_role(
            RoleArn=iam.get_role(RoleName=feed.job_role)["Role"]["Arn"], RoleSessionName=feed.name
        )
        creds = assumed["Credentials"]
        credentials[feed.name] = {
            "aws_access_key_id": creds["AccessKeyId"],
            "aws_secret_access_key": creds["SecretAccessKey"],
            "aws_session_token": creds["SessionToken"],
        }
    a, b = config.feeds
    s3.put_object(Bucket=config.bucket.name, Key=f"{a.landing_prefix}2026-03-01/a.csv",
                  Body=b"id,price,quantity\na-1,1.5,2\na-2,3,4\n")  # fmt: skip
    s3.put_object(Bucket=config.bucket.name, Key=f"{b.landing_prefix}2026-03-01/b.csv",
                  Body=b"customer_no,active\n7,true\n")  # fmt: skip
    return {"url": url, "admin": admin, "config": config, "a": a, "b": b, "credentials": credentials}


def _run_feed_job(
    feeds: dict[str, Any], *, role_of: str, key: str, table: str, prefixes_of: str, column_types: str = ""
) -> subprocess.CompletedProcess[str]:
    """``csv-importer`` under feed ``role_of``'s job role, writing bookkeeping under feed ``prefixes_of``'s."""
    creds = feeds["credentials"][role_of]
    prefixes = feeds["config"].feed(prefixes_of)
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "AWS_ENDPOINT_URL": feeds["url"],
        "AWS_ACCESS_KEY_ID": creds["aws_access_key_id"],
        "AWS_SECRET_ACCESS_KEY": creds["aws_secret_access_key"],
        "AWS_SESSION_TOKEN": creds["aws_session_token"],
        "AWS_DEFAULT_REGION": REGION,
        "AWS_MAX_ATTEMPTS": "2",
    }
    return subprocess.run(
        ["csv-importer", "--bucket", feeds["config"].bucket.name, "--key", key, "--table", table,
         "--manifest-prefix", prefixes.manifest_prefix, "--rejected-prefix", prefixes.rejected_prefix,
         "--column-types", column_types],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def _bucket_keys(feeds: dict[str, Any]) -> list[str]:
    s3 = _client("s3", feeds["url"], feeds["admin"])
    return [o["Key"] for o in s3.list_objects_v2(Bucket=feeds["config"].bucket.name).get("Contents", [])]


def test_each_feeds_job_imports_its_own_file_under_its_own_role(feeds: dict[str, Any]) -> None:
    a = feeds["a"]
    done = _run_feed_job(
        feeds, role_of=a.name, key=f"{a.landing_prefix}2026-03-01/a.csv", table=a.table.name,
        prefixes_of=a.name, column_types=a.column_types,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    items = _client("dynamodb", feeds["url"], feeds["admin"]).scan(TableName=a.table.name)["Items"]
    assert sorted(item["id"]["S"] for item in items) == ["a-1", "a-2"]
    assert {item["price"]["N"] for item in items} == {"1.5", "3"}
    assert [k for k in _bucket_keys(feeds) if k.startswith(a.manifest_prefix)]


def test_feed_a_job_pointed_at_feed_b_table_is_refused(feeds: dict[str, Any]) -> None:
    a, b = feeds["a"], feeds["b"]
    done = _run_feed_job(
        feeds,
        role_of=a.name,
        key=f"{a.landing_prefix}2026-03-01/a.csv",
        table=b.table.name,
        prefixes_of=a.name,
    )
    assert done.returncode == 3, done.stderr
    assert (
        done.stderr.strip()
        .splitlines()[-1]
        .endswith(
            f"DynamoDB table {b.table.name!r}: DescribeTable denied (AccessDeniedException) (a retry cannot fix this)"
        )
    )
    dynamodb = _client("dynamodb", feeds["url"], feeds["credentials"][a.name])
    item = {"customer_no": {"N": "666"}}
    assert _dynamodb_refusal(lambda: dynamodb.put_item(TableName=b.table.name, Item=item)) == DENIED
    assert _client("dynamodb", feeds["url"], feeds["admin"]).scan(TableName=b.table.name)["Items"] == []


def test_feed_a_job_pointed_at_feed_b_files_is_refused(feeds: dict[str, Any]) -> None:
    a, b = feeds["a"], feeds["b"]
    key = f"{b.landing_prefix}2026-03-01/b.csv"
    # B's file, into A's table, under A's role: A may not read B's landing prefix.
    done = _run_feed_job(feeds, role_of=a.name, key=key, table=a.table.name, prefixes_of=a.name)
    assert done.returncode == 3, done.stderr
    assert (
        done.stderr.strip()
        .splitlines()[-1]
        .endswith(
            f"s3://{feeds['config'].bucket.name}/{key}: access denied reading the object (a retry cannot fix this)"
        )
    )
    items = _client("dynamodb", feeds["url"], feeds["admin"]).scan(TableName=a.table.name)["Items"]
    assert not [item for item in items if "customer_no" in item]
    # ... while B's own role reads it.
    s3_b = _client("s3", feeds["url"], feeds["credentials"][b.name])
    assert (
        s3_b.get_object(Bucket=feeds["config"].bucket.name, Key=key)["Body"].read().startswith(b"customer_no")
    )


def test_feed_a_job_cannot_write_feed_b_bookkeeping(feeds: dict[str, Any]) -> None:
    a, b = feeds["a"], feeds["b"]
    before = [k for k in _bucket_keys(feeds) if k.startswith((b.manifest_prefix, b.rejected_prefix))]
    done = _run_feed_job(
        feeds, role_of=a.name, key=f"{a.landing_prefix}2026-03-01/a.csv", table=a.table.name,
        prefixes_of=b.name, column_types=a.column_types,
    )  # fmt: skip
    assert done.returncode != 0
    assert "AccessDenied" in done.stderr
    s3_a = _client("s3", feeds["url"], feeds["credentials"][a.name])
    bucket = feeds["config"].bucket.name
    assert _error_code(
        lambda: s3_a.put_object(Bucket=bucket, Key=f"{b.manifest_prefix}x.json", Body=b"{}")
    ) == ("AccessDenied")
    after = [k for k in _bucket_keys(feeds) if k.startswith((b.manifest_prefix, b.rejected_prefix))]
    assert after == before == []
