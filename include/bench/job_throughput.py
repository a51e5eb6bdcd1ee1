"""Throughput on one moto server: the article's put_item loop vs boto3's batch_writer vs csv-importer."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3

from include.bench.context import PROJECT_ROOT, BenchContext
from include.bench.sample_files import SAMPLE_COLUMN_TYPES

TITLE = "Import throughput on the local moto endpoint"
BUCKET = "bench-throughput"


def _resource() -> Any:
    """A DynamoDB resource from the environment (AWS_ENDPOINT_URL and credentials set by the benchmark)."""
    return boto3.resource("dynamodb")


def article_put_item_loop(key: str, table_name: str) -> None:
    """The reference article's job: read everything, one PutItem per row, every value a string."""
    s3 = boto3.client("s3")
    table = _resource().Table(table_name)
    lines = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read().decode("utf-8").splitlines()
    reader = csv.reader(lines)
    header = next(reader)
    current_date = datetime.now(UTC).isoformat()[:-6] + "Z"
    for row in reader:
        item = {name: row[header.index(name)] for name in header}
        item["createdAt"] = current_date
        table.put_item(Item=item)


def boto3_batch_writer(key: str, table_name: str) -> None:
    """The usual improvement: the resource layer's batch_writer (25-item BatchWriteItem, one in flight)."""
    s3 = boto3.client("s3")
    table = _resource().Table(table_name)
    lines = s3.get_object(Bucket=BUCKET, Key=key)["Body"].iter_lines()
    reader = csv.reader(line.decode("utf-8") for line in lines)
    header = next(reader)
    with table.batch_writer() as batch:
        for row in reader:
            batch.put_item(Item=dict(zip(header, row, strict=True)))


def _python_contender(name: str) -> list[str]:
    """A baseline run as its own process, as a Batch job would run it (start-up included, like ours)."""
    return [sys.executable, "-m", "include.bench.job_throughput", name]


def _run_process(
    context: BenchContext, command: list[str], key: str, table_name: str, extra_env: dict[str, str]
) -> None:
    env = context.endpoint.env() | {
        "bucket_name": BUCKET,
        "key": key,
        "table_name": table_name,
        "column_types": SAMPLE_COLUMN_TYPES,
        **extra_env,
    }
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900, cwd=PROJECT_ROOT)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({result.returncode}): {result.stderr[-2000:]}")


BASELINES = {"article": article_put_item_loop, "batch_writer": boto3_batch_writer}
CSV_IMPORTER = [str(Path(sys.executable).with_name("csv-importer"))]
# The other writer concurrency measured beside the shipped config's, so the config default can follow the figures.
ALTERNATIVE_WRITERS = (4, 8)


def shipped_writer_concurrency() -> int:
    """``import.writer_concurrency`` of the checked-in config (what a deployment runs unless it overrides it)."""
    from batch_import.config import load_config

    return load_config(environ={}).import_.writer_concurrency


def contenders() -> list[tuple[str, list[str], dict[str, str]]]:
    shipped = shipped_writer_concurrency()
    others = [n for n in ALTERNATIVE_WRITERS if n != shipped]
    return [
        ("article put_item loop", _python_contender("article"), {}),
        ("boto3 Table.batch_writer()", _python_contender("batch_writer"), {}),
        (
            f"csv-importer ({shipped} writers, the shipped config)",
            CSV_IMPORTER,
            {"writer_concurrency": str(shipped)},
        ),
        *((f"csv-importer ({n} writers)", CSV_IMPORTER, {"writer_concurrency": str(n)}) for n in others),
    ]


def run(context: BenchContext) -> str:
    rows = 5_000 if context.quick else 20_000
    key = f"incoming/bench-{rows}.csv"
    context.fresh_sample(BUCKET, key, rows)
    dynamodb = context.client("dynamodb")
    results: list[tuple[str, float, int]] = []
    for number, (name, contender, extra_env) in enumerate(contenders()):
        table = f"bench-throughput-{number}"
        context.create_table(table)
        started = time.perf_counter()
        _run_process(context, contender, key, table, extra_env)
        elapsed = time.perf_counter() - started
        count = dynamodb.describe_table(TableName=table)["Table"]["ItemCount"]  # type: ignore[attr-defined]
        results.append((name, elapsed, count))
    article_rate = rows / results[0][1]
    lines = [
        (
            f"A {rows:,}-row CSV (~100 bytes a row, columns typed `{SAMPLE_COLUMN_TYPES}` for csv-importer) imported "
            "into a fresh table on the same local endpoint process (`python -m include.local_aws`: moto's server "
            "with this project's fixes, as `make demo` runs it), one contender after the other. Wall time "
            "includes reading the object and, for every contender alike, its process start-up (each runs as its "
            "own process, as a Batch job does)."
        ),
        "",
        "| contender | seconds | rows/s | items in table | vs article |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, elapsed, count in results:
        rate = rows / elapsed
        lines.append(f"| {name} | {elapsed:.1f} | {rate:,.0f} | {count:,} | {rate / article_rate:.1f}x |")
    job_speedup = (rows / results[2][1]) / article_rate
    verdict = "meets" if job_speedup >= 10 else "misses"
    fastest = min(results[2:], key=lambda result: result[1])
    lines += [
        "",
        (
            f"The headline is the shipped config's writer concurrency ({shipped_writer_concurrency()}, "
            f"`import.writer_concurrency`). Fastest csv-importer setting measured: {fastest[0]}."
        ),
        "",
        f"Goal: at least 10x the article's loop. Measured {job_speedup:.1f}x: {verdict} the goal.",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    # A baseline as its own process: python -m include.bench.job_throughput {article|batch_writer}
    BASELINES[sys.argv[1]](os.environ["key"], os.environ["table_name"])
