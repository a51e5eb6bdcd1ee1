"""Client CPU per item: csv-importer (CSV parsing included) vs raw botocore BatchWriteItem, same items.

Both talk to the zero-latency stand-in (:mod:`include.bench.stand_in`), so only client-side work is measured:
process CPU time (all threads) from the first request to the last.
"""

from __future__ import annotations

import json
import time
from typing import Any

import boto3
from botocore.config import Config

from csv_importer.cli import make_clients
from csv_importer.importer import run_import
from csv_importer.reader import CHUNK_BYTES, ObjectSource
from csv_importer.settings import ImportSettings, parse_column_types
from include.bench.context import REGION, BenchContext
from include.bench.job_throughput import shipped_writer_concurrency
from include.bench.sample_files import SAMPLE_COLUMN_TYPES, sample_csv
from include.bench.stand_in import STAND_IN_URL, answer_dynamodb, answer_s3, stand_in_environment

TITLE = "Client CPU per item against a zero-latency DynamoDB stand-in"
TABLE = "stand-in-table"


def _job_run(data: bytes, *, on_batch: Any = None) -> float:
    settings = ImportSettings(
        bucket="stand-in-bucket",
        key="cpu.csv",
        table=TABLE,
        column_types=parse_column_types(SAMPLE_COLUMN_TYPES),
        writer_concurrency=shipped_writer_concurrency(),
    )
    with stand_in_environment():
        s3, dynamodb = make_clients(settings)
    answer_dynamodb(dynamodb, TABLE, on_batch=on_batch)
    answer_s3(s3)

    def source() -> ObjectSource:
        chunks = (data[i : i + CHUNK_BYTES] for i in range(0, len(data), CHUNK_BYTES))
        return ObjectSource(
            uri="s3://stand-in-bucket/cpu.csv", etag='"0"', content_length=len(data), chunks=chunks
        )

    started = time.process_time()
    manifest = run_import(settings, s3=s3, dynamodb=dynamodb, open_source=source)
    elapsed = time.process_time() - started
    if manifest.rows_imported != data.count(b"\n") - 1:
        raise RuntimeError(f"stand-in run imported {manifest.rows_imported} rows")
    return elapsed


def _raw_client(validate: bool) -> Any:
    client = boto3.client(
        "dynamodb",
        endpoint_url=STAND_IN_URL,
        region_name=REGION,
        aws_access_key_id="bench",
        aws_secret_access_key="bench",
        config=Config(parameter_validation=validate),
    )
    answer_dynamodb(client, TABLE)
    return client


def _raw_run(items: list[dict[str, Any]], *, validate: bool) -> float:
    client = _raw_client(validate)
    started = time.process_time()
    for start in range(0, len(items), 25):
        requests = [{"PutRequest": {"Item": item}} for item in items[start : start + 25]]
        client.batch_write_item(RequestItems={TABLE: requests})
    return time.process_time() - started


def run(context: BenchContext) -> str:
    rows = 20_000 if context.quick else 100_000
    data = sample_csv(rows)
    bodies: list[bytes] = []
    _job_run(data, on_batch=bodies.append)  # untimed: capture the exact items the job sends
    items = [r["PutRequest"]["Item"] for body in bodies for r in json.loads(body)["RequestItems"][TABLE]]
    job_seconds = min(_job_run(data) for _ in range(2))
    raw_seconds = min(_raw_run(items, validate=True) for _ in range(2))
    raw_unvalidated = min(_raw_run(items, validate=False) for _ in range(2))
    per_item = {
        name: seconds / rows * 1e6
        for name, seconds in (("job", job_seconds), ("raw", raw_seconds), ("raw_nv", raw_unvalidated))
    }
    ratio = per_item["job"] / per_item["raw"]
    verdict = "meets" if ratio <= 1.5 else "misses"
    return "\n".join(
        [
            (
                f"{rows:,} rows of the sample CSV (~100 bytes, {len(items[0])} attributes an item). csv-importer runs "
                f"in-process with its own clients ({shipped_writer_concurrency()} writer threads as the shipped config "
                "runs it, parameter validation off: it builds "
                "well-formed AttributeValues itself) and includes streaming, CSV parsing, typing, sizing and "
                "hashing. Raw botocore sends the very same items (captured from the job's requests) in 25-item "
                "BatchWriteItem calls on one thread. Process CPU time, best of 2."
            ),
            "",
            "| client | CPU seconds | CPU µs per item | vs raw botocore |",
            "|---|---:|---:|---:|",
            f"| csv-importer (whole job) | {job_seconds:.2f} | {per_item['job']:.1f} | {ratio:.2f}x |",
            f"| raw botocore batch_write_item | {raw_seconds:.2f} | {per_item['raw']:.1f} | 1.00x |",
            (
                f"| raw botocore, parameter validation off | {raw_unvalidated:.2f} | {per_item['raw_nv']:.1f} | "
                f"{per_item['raw_nv'] / per_item['raw']:.2f}x |"
            ),
            "",
            (
                "The goal is judged against botocore as a caller gets it (its defaults: parameter validation on). "
                "Against botocore with validation off, as the job itself runs it, the job's CPU per item is "
                f"{per_item['job'] / per_item['raw_nv']:.2f}x: the difference is the job's own work per row "
                f"(streaming, parsing, typing, sizing, hashing: {per_item['job'] - per_item['raw_nv']:.1f} µs)."
            ),
            "",
            f"Goal: the job within 1.5x of raw botocore. Measured {ratio:.2f}x: {verdict} the goal.",
        ]
    )
