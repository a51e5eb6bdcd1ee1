"""Fixtures for the import job: moto in-process S3 + DynamoDB, a table, and a way to run one import."""

from __future__ import annotations

import csv
import gzip
import io
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import boto3
import pytest
from moto import mock_aws

from csv_importer.importer import run_import
from csv_importer.manifest import ImportManifest
from csv_importer.settings import ImportSettings

BUCKET = "job-test-bucket"
TABLE = "job-test-items"
REGION = "us-east-1"


@pytest.fixture
def aws() -> Iterator[None]:
    with mock_aws():
        yield


@pytest.fixture
def s3(aws: None) -> Any:
    client = boto3.client("s3", region_name=REGION)
    client.create_bucket(Bucket=BUCKET)
    return client


@pytest.fixture
def dynamodb(aws: None) -> Any:
    return boto3.client("dynamodb", region_name=REGION)


def create_table(
    dynamodb: Any, name: str = TABLE, *, pk: str = "id", pk_type: str = "S", sk: str = "", sk_type: str = "S"
) -> str:
    schema = [{"AttributeName": pk, "KeyType": "HASH"}]
    definitions = [{"AttributeName": pk, "AttributeType": pk_type}]
    if sk:
        schema.append({"AttributeName": sk, "KeyType": "RANGE"})
        definitions.append({"AttributeName": sk, "AttributeType": sk_type})
    dynamodb.create_table(
        TableName=name, KeySchema=schema, AttributeDefinitions=definitions, BillingMode="PAY_PER_REQUEST"
    )
    return name


@pytest.fixture
def table(dynamodb: Any) -> str:
    return create_table(dynamodb)


def csv_text(rows: Sequence[Sequence[Any]], *, line_terminator: str = "\n") -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator=line_terminator).writerows(rows)
    return buffer.getvalue()


def put_object(s3: Any, key: str, content: str | bytes, *, compress: bool = False) -> None:
    body = content.encode("utf-8") if isinstance(content, str) else content
    if compress:
        body = gzip.compress(body)
    s3.put_object(Bucket=BUCKET, Key=key, Body=body)


def scan_items(dynamodb: Any, table: str = TABLE) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    for page in dynamodb.get_paginator("scan").paginate(TableName=table):
        items.extend(page["Items"])
    return items


def items_by_id(dynamodb: Any, table: str = TABLE) -> dict[str, dict[str, Any]]:
    return {item["id"]["S"]: item for item in scan_items(dynamodb, table)}


def rejected_rows(s3: Any, manifest: ImportManifest) -> list[dict[str, str]]:
    body = s3.get_object(Bucket=manifest.bucket, Key=manifest.rejected_key)["Body"].read().decode("utf-8")
    return list(csv.DictReader(io.StringIO(body)))


ImportRunner = Callable[..., ImportManifest]


@pytest.fixture
def run(s3: Any, dynamodb: Any) -> ImportRunner:
    """Run one import in-process against moto: ``run("data.csv", column_types={...}, shard_count=...)``."""

    def _run(key: str, *, table: str = TABLE, **overrides: Any) -> ImportManifest:
        settings = ImportSettings(bucket=BUCKET, key=key, table=table, **overrides)
        return run_import(settings, s3=s3, dynamodb=dynamodb)

    return _run
