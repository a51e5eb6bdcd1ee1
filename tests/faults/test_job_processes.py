"""Real ``csv-importer`` processes against the local endpoint: killed with SIGKILL mid-import and rerun; the
same file imported twice at once; two files sharing keys imported concurrently. The table is compared with
the expected items by a full scan, and the DAG's verification judges each import."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import boto3
import pytest

from batch_import.provisioning.dynamodb import ensure_table
from batch_import.verification import verify_import
from csv_importer.import_id import derive_import_id
from tests.faults.conftest import INDEX, KEY_SCHEMA, csv_bytes

BUCKET = "faults-processes"
TABLE = "faults-process-items"

pytestmark = pytest.mark.slow


@pytest.fixture
def clients(local_aws: Any) -> dict[str, Any]:
    s3 = boto3.client("s3", endpoint_url=local_aws.url)
    dynamodb = boto3.client("dynamodb", endpoint_url=local_aws.url)
    s3.create_bucket(Bucket=BUCKET)
    ensure_table(
        dynamodb,
        table_name=TABLE,
        key_schema=[("id", "HASH", "S")],
        verification_index=INDEX,
        poll_seconds=0.1,
    )
    return {"s3": s3, "dynamodb": dynamodb}


def land(clients: dict[str, Any], key: str, rows: list[list[str]]) -> str:
    clients["s3"].put_object(Bucket=BUCKET, Key=key, Body=csv_bytes([["id", "amount"], *rows]))
    return derive_import_id(BUCKET, key, clients["s3"].head_object(Bucket=BUCKET, Key=key)["ETag"])


def start_job(key: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.Popen(
        ["csv-importer", "--bucket", BUCKET, "--key", key, "--table", TABLE],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def finish(job: subprocess.Popen[str]) -> None:
    _, stderr = job.communicate(timeout=300)
    assert job.returncode == 0, stderr


def scan(clients: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        item["id"]["S"]: item
        for page in clients["dynamodb"].get_paginator("scan").paginate(TableName=TABLE, ConsistentRead=True)
        for item in page["Items"]
    }


def count_items(clients: dict[str, Any]) -> int:
    return sum(
        page["Count"]
        for page in clients["dynamodb"].get_paginator("scan").paginate(TableName=TABLE, Select="COUNT")
    )


def manifest(clients: dict[str, Any], import_id: str) -> dict[str, Any]:
    body = (
        clients["s3"].get_object(Bucket=BUCKET, Key=f"manifests/{import_id}/shard-0-of-1.json")["Body"].read()
    )
    return json.loads(body)


def verify(clients: dict[str, Any], key: str, import_id: str) -> Any:
    result, _ = verify_import(
        s3_client=clients["s3"], dynamodb_client=clients["dynamodb"], bucket_name=BUCKET,
        manifest_prefix="manifests/", rejected_prefix="rejected/", s3_key=key, import_id=import_id,
        shard_count=1, table_name=TABLE, index_name=INDEX, key_schema=KEY_SCHEMA,
    )  # fmt: skip
    return result


def test_a_job_killed_mid_import_converges_on_rerun(clients: dict[str, Any]) -> None:
    rows = [[f"k{n:06d}", str(n)] for n in range(30_000)] + [
        [f"k{n:06d}", f"last {n}"] for n in range(0, 30_000, 9)
    ]
    key = "incoming/2026-02-01/killed.csv"
    import_id = land(clients, key, rows)
    expected = {row[0]: row[1] for row in rows}

    job = start_job(key)
    deadline = time.monotonic() + 120
    while count_items(clients) == 0 and job.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    job.send_signal(signal.SIGKILL)
    job.communicate(timeout=30)
    assert job.returncode == -signal.SIGKILL
    written_before_kill = count_items(clients)
    assert 0 < written_before_kill < len(expected), "the kill did not land mid-import"
    assert not clients["s3"].list_objects_v2(Bucket=BUCKET, Prefix=f"manifests/{import_id}/")["KeyCount"]

    finish(start_job(key))

    items = scan(clients)
    assert {k: item["amount"]["S"] for k, item in items.items()} == expected
    assert {item["importId"]["S"] for item in items.values()} == {import_id}
    rerun = manifest(clients, import_id)
    assert (rerun["status"], rerun["rows_read"], rerun["rows_imported"], rerun["rows_rejected"]) == (
        "succeeded", len(rows), len(rows), 0,
    )  # fmt: skip
    assert (rerun["duplicate_keys"], rerun["distinct_keys"]) == (len(rows) - len(expected), len(expected))
    result = verify(clients, key, import_id)
    assert result.verified
    assert (result.expected, result.counted) == (len(expected), len(expected))


def test_the_same_file_imported_twice_at_once_lands_once(clients: dict[str, Any]) -> None:
    rows = [[f"s{n:05d}", str(n)] for n in range(8_000)] + [
        [f"s{n:05d}", f"last {n}"] for n in range(0, 8_000, 5)
    ]
    key = "incoming/2026-02-02/twice.csv"
    import_id = land(clients, key, rows)
    expected = {row[0]: row[1] for row in rows}

    jobs = [start_job(key), start_job(key)]
    for job in jobs:
        finish(job)

    items = scan(clients)
    assert {k: item["amount"]["S"] for k, item in items.items()} == expected
    assert manifest(clients, import_id)["distinct_keys"] == len(expected)
    result = verify(clients, key, import_id)
    assert result.verified
    assert (result.expected, result.counted) == (len(expected), len(expected))


def test_two_files_sharing_keys_imported_concurrently(clients: dict[str, Any]) -> None:
    first_rows = [[f"c{n:05d}", f"first {n}"] for n in range(0, 6_000)]
    second_rows = [[f"c{n:05d}", f"second {n}"] for n in range(3_000, 9_000)]
    first_key, second_key = "incoming/2026-02-03/first.csv", "incoming/2026-02-03/second.csv"
    first_id, second_id = land(clients, first_key, first_rows), land(clients, second_key, second_rows)

    jobs = [start_job(first_key), start_job(second_key)]
    for job in jobs:
        finish(job)

    items = scan(clients)
    assert sorted(items) == [f"c{n:05d}" for n in range(9_000)]
    owners = {first_id: "first", second_id: "second"}
    for item_key, item in items.items():
        # Whatever file won a shared key, the whole item is that file's row, never a mix.
        assert item["amount"]["S"] == f"{owners[item['importId']['S']]} {int(item_key[1:])}"
    first_result, second_result = verify(clients, first_key, first_id), verify(clients, second_key, second_id)
    assert first_result.verified, first_result.describe()
    assert second_result.verified, second_result.describe()
    shared = 3_000
    assert first_result.superseded + second_result.superseded == shared
    assert first_result.counted + second_result.counted == len(items)
