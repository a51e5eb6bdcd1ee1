"""The corpus of nasty files in tests/data/nasty, each through the real ``csv-importer`` command against the
local endpoint, checked against the outcome written beside it in expected.json (exit code, counts, rejected
line numbers, the table's exact items, the stderr's last line)."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import boto3
import pytest

from csv_importer.import_id import derive_import_id

CORPUS = Path(__file__).resolve().parents[1] / "data" / "nasty"
EXPECTED: dict[str, dict[str, Any]] = json.loads((CORPUS / "expected.json").read_text(encoding="utf-8"))
BUCKET = "nasty-corpus"
STAMPS = {"importId", "sourceKey", "importedAt"}

pytestmark = pytest.mark.slow


def test_every_corpus_file_has_an_expected_outcome() -> None:
    assert sorted(path.name for path in CORPUS.glob("*.csv")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_nasty_file_has_its_expected_outcome(local_aws: Any, name: str) -> None:
    expected = EXPECTED[name]
    s3 = boto3.client("s3", endpoint_url=local_aws.url)
    dynamodb = boto3.client("dynamodb", endpoint_url=local_aws.url)
    s3.create_bucket(Bucket=BUCKET)
    table = "nasty-" + name.removesuffix(".csv").replace("_", "-")
    dynamodb.create_table(
        TableName=table,
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    key = f"incoming/2026-01-01/{name}"
    s3.put_object(Bucket=BUCKET, Key=key, Body=(CORPUS / name).read_bytes())
    import_id = derive_import_id(BUCKET, key, s3.head_object(Bucket=BUCKET, Key=key)["ETag"])

    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run(
        ["csv-importer", "--bucket", BUCKET, "--key", key, "--table", table, "--max-reject-ratio", "1",
         *expected.get("args", [])],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip

    assert done.returncode == expected["exit_code"], done.stderr
    items = {
        item["id"]["S"]: {k: v for k, v in item.items() if k not in STAMPS | {"id"}}
        for page in dynamodb.get_paginator("scan").paginate(TableName=table)
        for item in page["Items"]
    }
    assert items == expected["items"]
    if "stderr" in expected:
        last_line = done.stderr.strip().splitlines()[-1]
        assert last_line.startswith("csv-importer: BAD_INPUT: ")
        assert expected["stderr"] in last_line
        assert key in last_line
    manifest_key = f"manifests/{import_id}/shard-0-of-1.json"
    listed = s3.list_objects_v2(Bucket=BUCKET, Prefix=manifest_key).get("Contents", [])
    if "rows_read" not in expected:
        if "manifest_status" in expected:
            manifest = json.loads(s3.get_object(Bucket=BUCKET, Key=manifest_key)["Body"].read())
            assert manifest["status"] == expected["manifest_status"]
            assert manifest["rows_imported"] == len(expected["items"])
        return
    assert listed, f"no manifest at {manifest_key}"
    manifest = json.loads(s3.get_object(Bucket=BUCKET, Key=manifest_key)["Body"].read())
    counts = {
        name: manifest[name] for name in ("rows_read", "rows_imported", "rows_rejected", "duplicate_keys")
    }
    assert counts == {name: expected[name] for name in counts}
    assert manifest["status"] == "succeeded"
    assert manifest["distinct_keys"] == len(expected["items"])
    rejected_body = s3.get_object(Bucket=BUCKET, Key=manifest["rejected_key"])["Body"].read().decode("utf-8")
    rejected = list(csv.DictReader(io.StringIO(rejected_body)))
    assert [int(row["line_number"]) for row in rejected] == expected["rejected_lines"]
    assert all(row["reason"] for row in rejected)
    assert all(row["raw_row"] for row in rejected), "a rejected row lost its content"
    if "rejected_raw" in expected:
        assert [row["raw_row"] for row in rejected] == expected["rejected_raw"]
