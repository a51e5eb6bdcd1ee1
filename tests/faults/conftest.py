"""Fault-injection fixtures: a bucket and the provisioned table (verification GSI), in-process or on the endpoint.

``world``: in-process moto; the job runs in-process through :func:`csv_importer.importer.run_import` with the
clients the CLI builds (:func:`csv_importer.cli.make_clients`: botocore ``standard`` retries), so faults meet the
job's real retry path. :func:`world_on_endpoint`: the same on the local endpoint, for real job processes. Either
way the DAG's own :func:`batch_import.verification.verify_import` judges the result.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from moto import mock_aws

from batch_import.provisioning.dynamodb import ensure_table
from batch_import.verification import ManifestTotals, VerificationResult, verify_import
from csv_importer.cli import make_clients
from csv_importer.import_id import derive_import_id
from csv_importer.manifest import ImportManifest
from csv_importer.settings import ImportSettings

BUCKET = "faults-landing"
TABLE = "faults-items"
REGION = "us-east-1"
KEY_SCHEMA = [("id", "S")]


@dataclass
class FaultWorld:
    """Clients, the bucket and the table, and ways to land, import, scan, verify."""

    s3: Any
    dynamodb: Any
    bucket: str = BUCKET
    table: str = TABLE

    def land(self, key: str, body: bytes) -> str:
        """Put ``body`` at ``key``; returns the import id the job and the DAG derive for it."""
        self.s3.put_object(Bucket=self.bucket, Key=key, Body=body)
        etag = self.s3.head_object(Bucket=self.bucket, Key=key)["ETag"]
        return derive_import_id(self.bucket, key, etag)

    def land_rows(self, key: str, rows: list[list[str]]) -> str:
        """Land a CSV of ``id,amount`` rows at ``key``; returns its import id."""
        return self.land(key, csv_bytes([["id", "amount"], *rows]))

    def job_clients(self) -> tuple[Any, Any]:
        return make_clients(ImportSettings(bucket=self.bucket, key="-", table=self.table))

    def table_items(self) -> dict[str, dict[str, Any]]:
        pages = self.dynamodb.get_paginator("scan").paginate(TableName=self.table, ConsistentRead=True)
        return {item["id"]["S"]: item for page in pages for item in page["Items"]}

    def count_items(self) -> int:
        pages = self.dynamodb.get_paginator("scan").paginate(TableName=self.table, Select="COUNT")
        return sum(page["Count"] for page in pages)

    def manifest(self, import_id: str) -> dict[str, Any]:
        """The single-shard manifest of ``import_id``."""
        key = f"manifests/{import_id}/shard-0-of-1.json"
        return json.loads(self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read())

    def rejected(self, manifest: ImportManifest) -> list[dict[str, str]]:
        body = (
            self.s3.get_object(Bucket=self.bucket, Key=manifest.rejected_key)["Body"].read().decode("utf-8")
        )
        return list(csv.DictReader(io.StringIO(body)))

    def verify(self, key: str, import_id: str, shard_count: int = 1) -> VerificationResult:
        return self.verify_with_totals(key, import_id, shard_count)[0]

    def verify_with_totals(
        self, key: str, import_id: str, shard_count: int = 1
    ) -> tuple[VerificationResult, ManifestTotals]:
        return verify_import(
            s3_client=self.s3,
            dynamodb_client=self.dynamodb,
            bucket_name=self.bucket,
            manifest_prefix="manifests/",
            rejected_prefix="rejected/",
            s3_key=key,
            import_id=import_id,
            shard_count=shard_count,
            table_name=self.table,
            key_schema=KEY_SCHEMA,
        )


def _provisioned_world(s3: Any, dynamodb: Any, bucket: str, table: str) -> FaultWorld:
    s3.create_bucket(Bucket=bucket)
    ensure_table(
        dynamodb,
        table_name=table,
        key_schema=[("id", "HASH", "S")],
        poll_seconds=0.05,
    )
    return FaultWorld(s3=s3, dynamodb=dynamodb, bucket=bucket, table=table)


@pytest.fixture
def world() -> Iterator[FaultWorld]:
    with mock_aws():
        s3 = boto3.client("s3", region_name=REGION)
        dynamodb = boto3.client("dynamodb", region_name=REGION)
        yield _provisioned_world(s3, dynamodb, BUCKET, TABLE)


def world_on_endpoint(endpoint_url: str, bucket: str, table: str) -> FaultWorld:
    """A bucket and the provisioned table on the local endpoint at ``endpoint_url``."""
    s3 = boto3.client("s3", endpoint_url=endpoint_url)
    dynamodb = boto3.client("dynamodb", endpoint_url=endpoint_url)
    return _provisioned_world(s3, dynamodb, bucket, table)


def csv_bytes(rows: list[list[str]]) -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(rows)
    return buffer.getvalue().encode("utf-8")
