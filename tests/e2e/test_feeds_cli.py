"""Three feeds with different key schemas (S, N, S+N composite), through the Airflow CLI and the real job.

``python -m include.local_aws`` in its own process, a generated config declaring the three feeds
(``CSV_IMPORT_CONFIG``), ``airflow dags test provision_batch_environment`` twice (the second run's requests,
recorded by the endpoint itself, contain no mutating call), then files for every feed landed on the same
date and ``airflow dags test import_<feed> <date>`` per feed: each table holds exactly its own feed's rows,
typed as its ``column_types`` say, verified, with its bookkeeping under its own prefixes. A file of one feed
landed under another feed's prefix never reaches the first feed's table.
"""

from __future__ import annotations

import json
import subprocess
from decimal import Decimal
from pathlib import Path
from typing import Any

import boto3
import pytest

from batch_import.config import load_config
from tests.e2e.conftest import Endpoint, csv_text, is_mutating, operation_of
from tests.fixtures.airflow_cli import airflow_cli_env, run_airflow
from tests.fixtures.feeds import THREE_FEEDS, write_feeds_config

pytestmark = pytest.mark.slow

REGION = "us-east-1"
DATE = "2026-04-01"
STRAY_DATE = "2026-04-02"
QUICK = {
    "CSV_IMPORT__IMPORT__POLL_INTERVAL_SECONDS": "1",
    "CSV_IMPORT__IMPORT__RETRY_DELAY_SECONDS": "1",
    "CSV_IMPORT__IMPORT__DEFERRAL_SETTLE_SECONDS": "0",  # `dags test` runs the trigger in-process: no race
    "CSV_IMPORT__SCHEDULE__SENSOR_POKE_SECONDS": "1",
    "CSV_IMPORT__SCHEDULE__SENSOR_GRACE_SECONDS": "3",
}
# Each feed's file of DATE: (header, rows). Keys overlap across feeds on purpose ("1" is a key of all three).
FILES: dict[str, tuple[list[str], list[list[str]]]] = {
    "orders": (
        ["id", "price", "quantity", "note"],
        [["1", "12.50", "3", "first"], ["o-2", "0.99", "10", "second"], ["o-3", "100", "1", "third"]],
    ),
    "customers": (
        ["customer_no", "name", "active"],
        [["1", "Ada", "true"], ["42", "Grace", "false"], ["7", "Edsger", "yes"], ["1000", "Barbara", "0"]],
    ),
    "readings": (
        ["sensor_id", "reading_time", "temperature"],
        [
            ["1", "1775001600", "20.5"],
            ["1", "1775003400", "21"],
            ["s-2", "1775001600", "-3.25"],
            ["s-2", "1775003400", "-2"],
            ["s-2", "1775005200", "-1.5"],
        ],
    ),
}


def airflow(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return run_airflow(env, *args, timeout=600)


def _expected_item(feed: Any, header: list[str], row: list[str]) -> dict[str, Any]:
    """The attributes the row must have in the table, typed as the feed's keys and column_types say."""
    types = {name: kind for name, _, kind in feed.table.key_schema}
    types |= dict(entry.split(":") for entry in feed.column_types.split(",") if entry)
    item: dict[str, Any] = {}
    for name, value in zip(header, row, strict=True):
        kind = types.get(name, "S")
        if kind == "N":
            item[name] = Decimal(value)
        elif kind == "BOOL":
            item[name] = value in ("true", "1", "yes")
        else:
            item[name] = value
    return item


def _typed(attribute: dict[str, Any]) -> Any:
    ((kind, value),) = attribute.items()
    return Decimal(value) if kind == "N" else value


def _table_items(dynamodb: Any, table: str) -> list[dict[str, Any]]:
    pages = dynamodb.get_paginator("scan").paginate(TableName=table, ConsistentRead=True)
    return [item for page in pages for item in page["Items"]]


def test_three_feeds_provisioned_idempotently_then_each_imports_only_its_own_files(
    tmp_path: Path, endpoint: Endpoint
) -> None:
    config_path = write_feeds_config(tmp_path / "pipeline.toml", THREE_FEEDS)
    settings = {"CSV_IMPORT_CONFIG": str(config_path), **QUICK}
    config = load_config(environ=settings)
    feeds = {feed.name: feed for feed in config.feeds}
    assert {tuple(kind for _, _, kind in feed.table.key_schema) for feed in config.feeds} == {
        ("S",),
        ("N",),
        ("S", "N"),
    }
    env = airflow_cli_env(tmp_path / "airflow_home", endpoint.url, region=REGION, settings=settings)
    migrated = airflow(env, "db", "migrate")
    assert migrated.returncode == 0, migrated.stderr[-3000:]

    provisioned = airflow(env, "dags", "test", "provision_batch_environment")
    assert provisioned.returncode == 0, provisioned.stdout[-3000:] + provisioned.stderr[-3000:]
    clients = {"endpoint_url": endpoint.url, "region_name": REGION}
    dynamodb = boto3.client("dynamodb", **clients)
    for feed in config.feeds:
        table = dynamodb.describe_table(TableName=feed.table.name)["Table"]
        types = {a["AttributeName"]: a["AttributeType"] for a in table["AttributeDefinitions"]}
        assert [
            (k["AttributeName"], k["KeyType"], types[k["AttributeName"]]) for k in table["KeySchema"]
        ] == [tuple(entry) for entry in feed.table.key_schema]

    # The second run, recorded by the endpoint: it describes everything and changes nothing.
    endpoint.start_recording()
    again = airflow(env, "dags", "test", "provision_batch_environment")
    requests = endpoint.stop_recording()
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    operations = [operation_of(request) for request in requests]
    assert operations.count("dynamodb:DescribeTable") >= len(config.feeds), operations
    assert [operation_of(r) for r in requests if is_mutating(r)] == []

    s3 = boto3.client("s3", **clients)
    for name, (header, rows) in FILES.items():
        s3.put_object(
            Bucket=config.bucket.name,
            Key=f"{feeds[name].landing_prefix}{DATE}/{name}.csv",
            Body=csv_text(header, rows).encode(),
        )
    # An orders file landed under the customers feed's prefix (another date, so no customers run sees it).
    stray_key = f"{feeds['customers'].landing_prefix}{STRAY_DATE}/stray-orders.csv"
    orders_header, _ = FILES["orders"]
    s3.put_object(
        Bucket=config.bucket.name,
        Key=stray_key,
        Body=csv_text(orders_header, [["stray-1", "1", "1", "x"]]).encode(),
    )

    for name in FILES:
        imported = airflow(env, "dags", "test", feeds[name].dag_id, DATE)
        output = imported.stdout + imported.stderr
        assert imported.returncode == 0, output[-5000:]
        assert "Verified import" in output, output[-5000:]
        assert f"DagRun Finished: dag_id={feeds[name].dag_id}, logical_date={DATE}" in output

    for name, (header, rows) in FILES.items():
        feed = feeds[name]
        items = _table_items(dynamodb, feed.table.name)
        keys = [key for key, _, _ in feed.table.key_schema]
        got = {
            tuple(_typed(item[key]) for key in keys): {n: _typed(item[n]) for n in header} for item in items
        }
        expected = {}
        for row in rows:
            wanted = _expected_item(feed, header, row)
            expected[tuple(wanted[key] for key in keys)] = wanted
        assert got == expected, (name, got)
        for item in items:
            for key, _, kind in feed.table.key_schema:
                assert set(item[key]) == {kind}, (name, item)
            for column, kind in (entry.split(":") for entry in feed.column_types.split(",")):
                assert set(item[column]) == {kind}, (name, column, item)
            assert item["sourceKey"]["S"].startswith(f"s3://{config.bucket.name}/{feed.landing_prefix}")

    listed = [o["Key"] for o in s3.list_objects_v2(Bucket=config.bucket.name)["Contents"]]
    for feed in config.feeds:
        markers = [k for k in listed if k.startswith(feed.manifest_prefix) and k.endswith("verified.json")]
        assert len(markers) == 1, (feed.name, listed)
        marker = json.loads(s3.get_object(Bucket=config.bucket.name, Key=markers[0])["Body"].read())
        assert marker["s3_key"] == f"{feed.landing_prefix}{DATE}/{feed.name}.csv"
        assert marker["counted"] == marker["expected"] == len(FILES[feed.name][1])
    assert not [k for k in listed if k.startswith("manifests/") and k.split("/")[1] not in feeds], listed

    # The stray orders file: the orders DAG's day has nothing under the orders prefix (the run is skipped) ...
    stray_day = airflow(env, "dags", "test", feeds["orders"].dag_id, STRAY_DATE)
    output = stray_day.stdout + stray_day.stderr
    assert f"No .csv or .csv.gz file landed for {STRAY_DATE}" in output, output[-5000:]
    # ... and the orders form refuses the stray key: it is not under the orders landing prefix.
    requested = airflow(
        env, "dags", "test", feeds["orders"].dag_id, STRAY_DATE, "-c", json.dumps({"s3_key": stray_key})
    )
    output = requested.stdout + requested.stderr
    assert requested.returncode != 0
    assert "s3_key" in output, output[-5000:]
    orders_items = _table_items(dynamodb, feeds["orders"].table.name)
    assert len(orders_items) == len(FILES["orders"][1])
    assert not [item for item in orders_items if item["sourceKey"]["S"].endswith(stray_key)]
