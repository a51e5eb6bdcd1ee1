"""Hostile-input fixtures: one in-process moto for a whole property test, a fresh table per example."""

from __future__ import annotations

import csv
import io
import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import boto3
import pytest
from moto import mock_aws

BUCKET = "hostile-landing"
REGION = "us-east-1"


@dataclass
class HostileWorld:
    s3: Any
    dynamodb: Any
    _names: Iterator[int] = field(default_factory=itertools.count)

    def new_table(self) -> str:
        """A fresh table keyed by the string ``id`` (each example gets its own, so nothing leaks between)."""
        name = f"hostile-{next(self._names)}"
        self.dynamodb.create_table(
            TableName=name,
            KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        return name

    def land(self, body: bytes, suffix: str = ".csv") -> str:
        key = f"incoming/hostile-{next(self._names)}{suffix}"
        self.s3.put_object(Bucket=BUCKET, Key=key, Body=body)
        return key

    def items(self, table: str) -> dict[str, dict[str, Any]]:
        found: dict[str, dict[str, Any]] = {}
        for page in self.dynamodb.get_paginator("scan").paginate(TableName=table):
            for item in page["Items"]:
                found[item["id"]["S"]] = item
        return found

    def rejected(self, rejected_key: str) -> list[dict[str, str]]:
        body = self.s3.get_object(Bucket=BUCKET, Key=rejected_key)["Body"].read().decode("utf-8")
        return list(csv.DictReader(io.StringIO(body)))


@pytest.fixture(scope="module")
def hostile_world() -> Iterator[HostileWorld]:
    with mock_aws():
        s3 = boto3.client("s3", region_name=REGION)
        s3.create_bucket(Bucket=BUCKET)
        yield HostileWorld(s3=s3, dynamodb=boto3.client("dynamodb", region_name=REGION))
