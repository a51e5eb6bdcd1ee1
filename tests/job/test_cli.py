"""The real ``csv-importer`` command in a subprocess against a moto server: settings and exit codes."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto.server import ThreadedMotoServer

from csv_importer.exit_codes import NON_RETRYABLE, ExitCode, is_retryable
from tests.job.conftest import BUCKET, REGION, TABLE, create_table, csv_text

COMMAND = str(Path(sys.executable).with_name("csv-importer"))


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def endpoint(moto_url: str) -> Iterator[dict[str, Any]]:
    urllib.request.urlopen(urllib.request.Request(f"{moto_url}/moto-api/reset", method="POST")).close()
    kwargs = {"endpoint_url": moto_url, "region_name": REGION}
    s3, dynamodb = boto3.client("s3", **kwargs), boto3.client("dynamodb", **kwargs)
    s3.create_bucket(Bucket=BUCKET)
    create_table(dynamodb)
    return {"url": moto_url, "s3": s3, "dynamodb": dynamodb}


def run_command(
    endpoint: dict[str, Any], *args: str, env: dict[str, str] | None = None, module: bool = False
) -> subprocess.CompletedProcess[str]:
    environment = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("AWS_", "bucket", "table", "key"))
    }
    environment.update(
        AWS_ENDPOINT_URL=endpoint["url"],
        AWS_DEFAULT_REGION=REGION,
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
    )
    environment.update(env or {})
    command = [sys.executable, "-m", "csv_importer"] if module else [COMMAND]
    return subprocess.run([*command, *args], env=environment, capture_output=True, text=True, timeout=120)


def last_line(result: subprocess.CompletedProcess[str]) -> str:
    return result.stderr.strip().splitlines()[-1]


def test_import_with_the_article_env_names_and_a_manifest(endpoint):
    endpoint["s3"].put_object(
        Bucket=BUCKET, Key="in/a.csv", Body=csv_text([["id", "n"], ["1", "5"], ["2", "6"]])
    )
    result = run_command(
        endpoint, env={"bucket_name": BUCKET, "key": "in/a.csv", "table_name": TABLE, "column_types": "n:N"}
    )
    assert result.returncode == ExitCode.OK, result.stderr
    assert "summary s3://job-test-bucket/in/a.csv: status=succeeded rows_read=2" in result.stderr
    items = endpoint["dynamodb"].scan(TableName=TABLE)["Items"]
    assert sorted(i["n"]["N"] for i in items) == ["5", "6"]
    listing = endpoint["s3"].list_objects_v2(Bucket=BUCKET, Prefix="manifests/")["Contents"]
    manifest = json.loads(endpoint["s3"].get_object(Bucket=BUCKET, Key=listing[0]["Key"])["Body"].read())
    assert (manifest["rows_imported"], manifest["status"]) == (2, "succeeded")


def test_flags_win_over_the_environment_and_array_index_is_the_shard(endpoint):
    endpoint["s3"].put_object(Bucket=BUCKET, Key="b.csv", Body=csv_text([["id"], ["1"], ["2"], ["3"]]))
    result = run_command(
        endpoint,
        "--key",
        "b.csv",
        "--import-id",
        "flag-id",
        env={
            "bucket_name": BUCKET,
            "key": "wrong.csv",
            "table_name": TABLE,
            "import_id": "env-id",
            "shard_count": "2",
            "AWS_BATCH_JOB_ARRAY_INDEX": "1",
        },
        module=True,
    )
    assert result.returncode == ExitCode.OK, result.stderr
    keys = [o["Key"] for o in endpoint["s3"].list_objects_v2(Bucket=BUCKET, Prefix="manifests/")["Contents"]]
    assert keys == ["manifests/flag-id/shard-1-of-2.json"]


REQUIRED = ["--bucket", BUCKET, "--key", "a.csv", "--table", TABLE]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        pytest.param(
            ["--bucket", BUCKET, "--table", TABLE], "missing required setting(s): --key", id="missing"
        ),
        pytest.param(
            [*REQUIRED, "--shard-count", "2", "--shard-index", "2"],
            "shard index 2 is outside 0..1",
            id="shard-index",
        ),
        pytest.param(
            [*REQUIRED, "--column-types", "a:DATE"], "type must be one of S, N, BOOL", id="column-type"
        ),
        pytest.param(
            [*REQUIRED, "--max-reject-ratio", "2"], "max_reject_ratio must be between 0 and 1", id="ratio"
        ),
        # What argparse itself refuses ends the same way, not with its own "csv-importer: error: ..." line.
        pytest.param(
            [*REQUIRED, "--bogus"],
            "unrecognized arguments: --bogus; see csv-importer --help",
            id="unknown-flag",
        ),
        pytest.param(
            [*REQUIRED[2:], "--bucket"],
            "argument --bucket: expected one argument; see csv-importer --help",
            id="flag-without-value",
        ),
        pytest.param(
            [*REQUIRED[:2], "--shard-count", *REQUIRED[2:]],
            "argument --shard-count: expected one argument",
            id="flag-value-missing-mid-line",
        ),
        pytest.param([*REQUIRED, "stray.csv"], "unrecognized arguments: stray.csv", id="positional"),
    ],
)
@pytest.mark.parametrize("module", [False, True], ids=["console-command", "python-m"])
def test_bad_arguments_exit_2(endpoint, args, expected, module):
    result = run_command(endpoint, *args, module=module)
    assert result.returncode == ExitCode.USAGE
    assert expected in last_line(result)
    assert re.fullmatch(r"csv-importer: USAGE: .+ \(a retry cannot fix this\)", last_line(result))
    assert "csv-importer: error:" not in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("key", "content", "table", "expected"),
    [
        pytest.param(
            "missing.csv",
            None,
            TABLE,
            "s3://job-test-bucket/missing.csv: object does not exist",
            id="missing-object",
        ),
        pytest.param(
            "t.csv", "id\n1\n", "no-table", "DynamoDB table 'no-table' does not exist", id="missing-table"
        ),
        pytest.param("empty.csv", "", TABLE, "s3://job-test-bucket/empty.csv: object is empty", id="empty"),
        pytest.param(
            "latin.csv",
            "id\nx\n\xe9\n".encode("latin-1"),
            TABLE,
            "latin.csv: line 3 is not valid UTF-8",
            id="not-utf8",
        ),
    ],
)
def test_bad_input_exits_3_with_one_clear_line(endpoint, key, content, table, expected):
    if content is not None:
        endpoint["s3"].put_object(Bucket=BUCKET, Key=key, Body=content)
    result = run_command(endpoint, "--bucket", BUCKET, "--key", key, "--table", table)
    assert result.returncode == ExitCode.BAD_INPUT, result.stderr
    assert expected in last_line(result)
    assert last_line(result).endswith("(a retry cannot fix this)")
    assert "Traceback" not in result.stderr


def test_reject_ratio_exceeded_exits_4(endpoint):
    endpoint["s3"].put_object(
        Bucket=BUCKET, Key="r.csv", Body=csv_text([["id", "n"], ["1", "x"], ["2", "2"]])
    )
    result = run_command(
        endpoint,
        "--bucket",
        BUCKET,
        "--key",
        "r.csv",
        "--table",
        TABLE,
        "--column-types",
        "n:N",
        "--max-reject-ratio",
        "0.25",
    )
    assert result.returncode == ExitCode.REJECT_RATIO_EXCEEDED
    assert "1 of 2 rows rejected, over max_reject_ratio 0.25" in last_line(result)
    assert len(endpoint["dynamodb"].scan(TableName=TABLE)["Items"]) == 1


def test_unreachable_endpoint_is_transient(endpoint):
    result = run_command(
        endpoint,
        "--bucket",
        BUCKET,
        "--key",
        "a.csv",
        "--table",
        TABLE,
        env={"AWS_ENDPOINT_URL": "http://127.0.0.1:9", "AWS_MAX_ATTEMPTS": "1"},
    )
    assert result.returncode == ExitCode.TRANSIENT, result.stderr
    assert last_line(result).endswith("(a retry may succeed)")


def test_retryability_of_the_exit_codes():
    assert NON_RETRYABLE == {
        ExitCode.USAGE,
        ExitCode.BAD_INPUT,
        ExitCode.REJECT_RATIO_EXCEEDED,
        ExitCode.OBJECT_CHANGED,
    }
    assert [code for code in ExitCode if is_retryable(code)] == [ExitCode.UNEXPECTED, ExitCode.TRANSIENT]
