"""Shard scaling: N csv-importer processes (one per shard) on one object, in parallel, on one local endpoint."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from include.bench.context import BenchContext
from include.bench.sample_files import SAMPLE_COLUMN_TYPES

TITLE = "Shard scaling (array-job shards as parallel processes)"
BUCKET = "bench-shards"


def _run_shards(context: BenchContext, key: str, table: str, shard_count: int) -> float:
    command = [str(Path(sys.executable).with_name("csv-importer"))]
    base = context.endpoint.env() | {
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


def run(context: BenchContext) -> str:
    rows = 5_000 if context.quick else 20_000
    key = f"incoming/shards-{rows}.csv"
    context.fresh_sample(BUCKET, key, rows)
    dynamodb = context.client("dynamodb")
    lines = [
        (
            f"A {rows:,}-row object split by key hash into N shards, each shard a `csv-importer` process (as a Batch "
            f"array child) streaming the whole object and writing its rows; all on one local endpoint process. "
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
        context.create_table(table)
        elapsed = _run_shards(context, key, table, shard_count)
        baseline = baseline or elapsed
        count = dynamodb.describe_table(TableName=table)["Table"]["ItemCount"]  # type: ignore[attr-defined]
        lines.append(
            f"| {shard_count} | {elapsed:.1f} | {rows / elapsed:,.0f} | {count:,} | {baseline / elapsed:.2f}x |"
        )
    return "\n".join(lines)
