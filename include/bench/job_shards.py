"""Shard scaling: N csv-importer processes (one per shard) on one object, in parallel, on one moto server."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from include.bench.context import BenchContext
from include.bench.sample_files import SAMPLE_COLUMN_TYPES, sample_csv

TITLE = "Shard scaling (array-job shards as parallel processes)"
BUCKET = "bench-shards"


def _run_shards(context: BenchContext, key: str, table: str, shard_count: int) -> float:
    command = [str(Path(sys.executable).with_name("csv-importer"))]
    base = context.moto.env() | {
        "bucket_name": BUCKET,
        "key": key,
        "table_name": table,
        "column_types": SAMPLE_COLUMN_TYPES,
        "shard_count": str(shard_count),
    }
    started = time.perf_counter()
    processes = [
        subprocess.Popen(
            command,
            env=base | {"AWS_BATCH_JOB_ARRAY_INDEX": str(index)},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for index in range(shard_count)
    ]
    failures = []
    for process in processes:
        _out, err = process.communicate(timeout=900)
        if process.returncode != 0:
            failures.append(err[-1000:])
    elapsed = time.perf_counter() - started
    if failures:
        raise RuntimeError(f"shard run failed: {failures}")
    return elapsed


def _create_table(dynamodb: Any, name: str) -> None:
    dynamodb.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )


def run(context: BenchContext) -> str:
    rows = 5_000 if context.quick else 20_000
    context.moto.reset()
    s3, dynamodb = context.client("s3"), context.client("dynamodb")
    s3.create_bucket(Bucket=BUCKET)  # type: ignore[attr-defined]
    key = f"incoming/shards-{rows}.csv"
    s3.put_object(Bucket=BUCKET, Key=key, Body=sample_csv(rows))  # type: ignore[attr-defined]
    lines = [
        (
            f"A {rows:,}-row object split by key hash into N shards, each shard a `csv-importer` process (as a Batch "
            f"array child) streaming the whole object and writing its rows; all on one `moto_server` process. "
            f"This machine has {os.cpu_count()} CPU cores shared by the server and the shards, so the figures show "
            "the local ceiling, not AWS's (where each shard has its own vCPUs and DynamoDB scales out)."
        ),
        "",
        "| shards | seconds | rows/s | items in table | speed-up |",
        "|---:|---:|---:|---:|---:|",
    ]
    baseline = 0.0
    for shard_count in (1, 2, 4):
        table = f"bench-shards-{shard_count}"
        _create_table(dynamodb, table)
        elapsed = _run_shards(context, key, table, shard_count)
        baseline = baseline or elapsed
        count = dynamodb.describe_table(TableName=table)["Table"]["ItemCount"]  # type: ignore[attr-defined]
        lines.append(
            f"| {shard_count} | {elapsed:.1f} | {rows / elapsed:,.0f} | {count:,} | {baseline / elapsed:.2f}x |"
        )
    return "\n".join(lines)
