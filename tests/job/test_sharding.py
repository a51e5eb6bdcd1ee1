"""Sharding: every data row is accounted for by exactly one shard, and the shards' manifests add up."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import boto3
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from moto import mock_aws

from csv_importer.importer import run_import
from csv_importer.manifest import manifest_key, read_totals
from csv_importer.settings import ImportSettings
from tests.job.conftest import BUCKET, REGION, TABLE, create_table, csv_text, items_by_id, rejected_rows

# Keys from a small alphabet (so duplicates happen), values with commas, quotes and newlines.
keys = st.one_of(
    st.sampled_from(["", "a", "b", "c", "d", "e", "f", "g"]), st.text("xyz", min_size=1, max_size=3)
)
values = st.text(alphabet=st.sampled_from(list('ab ,"\n\r\u00e9')), max_size=8)
good_rows = st.tuples(keys, values, st.sampled_from(["1", "2.5", "-3", "x", ""])).map(list)
odd_rows = st.lists(values, min_size=1, max_size=4).filter(lambda row: len(row) != 3 and row != [""])
rows_strategy = st.lists(st.one_of(good_rows, good_rows, good_rows, odd_rows), max_size=40)


def data_records(content: str) -> int:
    return sum(1 for record in csv.reader(io.StringIO(content, newline="")) if record) - 1


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=rows_strategy, shard_count=st.integers(min_value=1, max_value=4), gzip=st.booleans())
def test_shards_partition_the_rows_and_manifests_add_up(rows: list[list[str]], shard_count: int, gzip: bool):
    content = csv_text([["id", "text", "n"], *rows], line_terminator="\r\n")
    key = "in/shards.csv.gz" if gzip else "in/shards.csv"
    with mock_aws():
        s3 = boto3.client("s3", region_name=REGION)
        dynamodb = boto3.client("dynamodb", region_name=REGION)
        s3.create_bucket(Bucket=BUCKET)
        create_table(dynamodb)
        body = content.encode()
        if gzip:
            import gzip as gzip_module

            body = gzip_module.compress(body)
        s3.put_object(Bucket=BUCKET, Key=key, Body=body)
        manifests = []
        for index in range(shard_count):
            shard = ImportSettings(
                bucket=BUCKET,
                key=key,
                table=TABLE,
                column_types={"n": "N"},
                shard_count=shard_count,
                shard_index=index,
                max_reject_ratio=1.0,
                writer_concurrency=2,
            )
            manifests.append(run_import(shard, s3=s3, dynamodb=dynamodb))
        stored = items_by_id(dynamodb)
        rejected_lines = [int(r["line_number"]) for m in manifests for r in rejected_rows(s3, m)]
        s3.put_object(Bucket=BUCKET, Key=f"manifests/{manifests[0].import_id}/verified.json", Body=b"{}")
        summary = read_totals(
            s3, bucket=BUCKET, manifest_prefix="manifests/", import_id=manifests[0].import_id
        )

    for manifest in manifests:
        assert manifest.rows_read == manifest.rows_imported + manifest.rows_rejected
    assert summary.rows_read == data_records(content)
    assert summary.complete
    assert (summary.shard_count, summary.shards_found) == (shard_count, shard_count)
    assert len(rejected_lines) == len(set(rejected_lines)) == summary.rows_rejected
    # Last valid row per key wins; every key that had a valid row is stored.
    expected: dict[str, Any] = {}
    for row in rows:
        if len(row) == 3 and row[0] and _is_number_or_empty(row[2]):
            expected[row[0]] = row[1]
    assert {k: v.get("text", {}).get("S", "") for k, v in stored.items()} == expected
    assert summary.distinct_keys == len(expected)
    assert summary.rows_imported - summary.duplicate_keys == len(expected)


def _is_number_or_empty(text: str) -> bool:
    return text in {"", "1", "2.5", "-3"}


@mock_aws
def test_read_totals_reports_missing_and_failed_shards_under_any_prefix():
    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket=BUCKET)
    base = {"rows_read": 2, "rows_imported": 1, "rows_rejected": 1, "duplicate_keys": 0, "distinct_keys": 1}
    prefix = "bookkeeping/manifests/"
    for index, count, status in ((0, 3, "succeeded"), (2, 3, "failed"), (0, 1, "succeeded")):
        manifest = {**base, "shard_index": index, "shard_count": count, "status": status, "etag": '"e"'}
        s3.put_object(Bucket=BUCKET, Key=manifest_key(prefix, "imp", index, count), Body=json.dumps(manifest))
    s3.put_object(Bucket=BUCKET, Key=f"{prefix}imp/verified.json", Body=b"{}")

    largest = read_totals(s3, bucket=BUCKET, manifest_prefix=prefix, import_id="imp")
    assert (largest.shard_count, largest.shards_found, largest.rows_read) == (3, 2, 4)
    assert largest.statuses == ("failed", "succeeded")
    assert largest.complete is False
    single = read_totals(s3, bucket=BUCKET, manifest_prefix=prefix, import_id="imp", shard_count=1)
    assert (single.shards_found, single.complete, single.etags) == (1, True, ('"e"',))
    assert read_totals(s3, bucket=BUCKET, manifest_prefix="manifests/", import_id="imp").shards_found == 0
