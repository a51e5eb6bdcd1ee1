"""What a million rows cost: the article's PutItem loop, boto3's batch_writer and this pipeline (import and
verification), in request units and dollars, with DynamoDB's own S3 import on paper beside them."""

from __future__ import annotations

import math
import time
from typing import Any

from include.bench.context import BenchContext
from include.bench.job_throughput import BUCKET, CSV_IMPORTER, _python_contender, _run_process
from include.local_aws.dynamodb_consumed_capacity import item_bytes

TITLE = "What an import costs"
IMPORT_TABLE_USD_PER_GB = 0.15  # DynamoDB ImportTable from S3: per GB of uncompressed data, new tables only
GOAL_RATIO = 1.15


def _scan(context: BenchContext, table: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    for page in context.client("dynamodb").get_paginator("scan").paginate(TableName=table):  # type: ignore[attr-defined]
        items.extend(page["Items"])
    return items


def _write_units_per_put(items: list[dict[str, Any]]) -> float:
    """One PutItem per row, each a write unit per started KB of its item (DynamoDB's rule)."""
    return float(sum(max(1, math.ceil(item_bytes(item) / 1024)) for item in items))


def _pipeline(context: BenchContext, key: str, table: str, rows: int) -> tuple[Any, float]:
    """csv-importer as its own process, then the DAG's verification in this process; the import's cost."""
    from batch_import.config import load_config
    from batch_import.cost import S3CallCounter, import_cost
    from batch_import.verification import verify_import
    from csv_importer.import_id import derive_import_id
    from csv_importer.manifest import read_totals

    config = load_config(environ={})
    s3, dynamodb = context.client("s3"), context.client("dynamodb")
    etag = s3.head_object(Bucket=BUCKET, Key=key)["ETag"]  # type: ignore[attr-defined]
    import_id = derive_import_id(BUCKET, key, etag)
    started = time.perf_counter()
    _run_process(context, CSV_IMPORTER, key, table, {"import_id": import_id, "expected_etag": etag})
    with S3CallCounter(s3) as counter:
        result, totals = verify_import(
            s3_client=s3,  # type: ignore[arg-type]
            dynamodb_client=dynamodb,  # type: ignore[arg-type]
            bucket_name=BUCKET,
            manifest_prefix=config.bucket.manifest_prefix,
            rejected_prefix=config.bucket.rejected_prefix,
            s3_key=key,
            import_id=import_id,
            shard_count=1,
            table_name=table,
            key_schema=[("id", "S")],
            expected_etag=etag,
        )
    elapsed = time.perf_counter() - started
    if not result.verified:
        raise RuntimeError(f"the pipeline's import did not verify: {result.describe()}")
    totals = read_totals(
        s3, bucket=BUCKET, manifest_prefix=config.bucket.manifest_prefix, import_id=import_id
    )  # type: ignore[arg-type]
    cost = import_cost(
        write_request_units=float(totals.write_request_units),
        index_write_request_units=totals.index_write_request_units,
        read_request_units=result.read_request_units,
        run_seconds=totals.run_seconds,
        shard_count=1,
        vcpus=config.batch.vcpus,
        memory_mib=config.batch.memory_mib,
        verification_s3_calls={**counter.calls, "PutObject": counter.calls.get("PutObject", 0) + 1},
        prices=config.prices,
    )
    return cost, elapsed


def run(context: BenchContext) -> str:
    from batch_import.config import load_config

    prices = load_config(environ={}).prices
    rows = 2_000 if context.quick else 10_000
    key = f"incoming/cost-{rows}.csv"
    context.fresh_sample(BUCKET, key, rows)
    s3 = context.client("s3")
    size_bytes = int(s3.head_object(Bucket=BUCKET, Key=key)["ContentLength"])  # type: ignore[attr-defined]
    per_million = 1e6 / rows
    write_price = prices.dynamodb_write_per_million_units / 1e6
    read_price = prices.dynamodb_read_per_million_units / 1e6

    measured: list[tuple[str, float, float, str]] = []  # name, WRU, RRU, how
    for number, (name, contender) in enumerate(
        (
            ("article put_item loop", _python_contender("article")),
            ("boto3 Table.batch_writer()", _python_contender("batch_writer")),
        )
    ):
        table = f"bench-cost-{number}"
        context.create_table(table)
        _run_process(context, contender, key, table, {})
        items = _scan(context, table)
        measured.append((name, _write_units_per_put(items), 0.0, "computed from the items in the table"))
    context.create_table("bench-cost-pipeline")
    cost, _ = _pipeline(context, key, "bench-cost-pipeline", rows)
    measured.append(
        (
            "this pipeline (import + verification)",
            cost.all_write_request_units,
            cost.read_request_units,
            "DynamoDB's ConsumedCapacity (manifests, verification)",
        )
    )

    lines = [
        (
            f"The same {rows:,}-row sample CSV ({size_bytes:,} bytes, items well under 1 KB) imported into a fresh "
            "on-demand table on the local endpoint, whose ConsumedCapacity follows DynamoDB's documented rules "
            "(include/local_aws/dynamodb_consumed_capacity.py). Dollars per million rows at "
            f"{prices.region} list prices read {prices.read_on} (config `[prices]`): "
            f"${prices.dynamodb_write_per_million_units} per million write units, "
            f"${prices.dynamodb_read_per_million_units} per million read units. The baselines verify nothing."
        ),
        "",
        "| contender | write units / M rows | read units / M rows | DynamoDB $ / M rows | vs article | measured by |",
        "|---|---:|---:|---:|---:|---|",
    ]
    article_usd = measured[0][1] * per_million * write_price
    pipeline_usd = 0.0
    for name, wru, rru, how in measured:
        usd = (wru * write_price + rru * read_price) * per_million
        pipeline_usd = usd
        lines.append(
            f"| {name} | {wru * per_million:,.0f} | {rru * per_million:,.0f} | {usd:.4f} | "
            f"{usd / article_usd:.2f}x | {how} |"
        )
    import_table_usd = size_bytes / 1e9 * IMPORT_TABLE_USD_PER_GB * per_million
    lines.append(
        f"| DynamoDB ImportTable from S3 (on paper: new tables only) | - | - | {import_table_usd:.4f} | "
        f"{import_table_usd / article_usd:.2f}x | ${IMPORT_TABLE_USD_PER_GB} per GB of uncompressed data |"
    )
    ratio = pipeline_usd / article_usd
    verdict = "meets" if ratio <= GOAL_RATIO else "misses"
    parts = cost.parts_usd()
    lines += [
        "",
        (
            f"The pipeline's whole report for this import (verified.json): {cost.describe()}; parts "
            + ", ".join(f"{part} ${value:.6f}" for part, value in parts.items())
            + ". Batch compute is the job's run time times the job definition's vCPUs and memory (Fargate bills "
            "at least one minute per task)."
        ),
        "",
        (
            f"Goal: the pipeline, verification included, at most {GOAL_RATIO}x the article's loop in DynamoDB cost "
            f"per million rows of items under 1 KB. Measured {ratio:.2f}x: {verdict} the goal."
        ),
    ]
    return "\n".join(lines)
