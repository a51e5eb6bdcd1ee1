"""Fault-injection fixtures: in-process moto S3 + DynamoDB with the provisioned table (verification GSI).

The job runs in-process through :func:`csv_importer.importer.run_import` with the clients the CLI builds
(:func:`csv_importer.cli.make_clients`: botocore ``standard`` retries), so faults meet the job's real retry path,
and the DAG's own :func:`batch_import.verification.verify_import` judges the result.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from moto import mock_aws

from batch_import.provisioning.dynamodb import ensure_table
from batch_import.verification import VerificationResult, verify_import
from csv_importer.cli import make_clients
from csv_importer.import_id import derive_import_id
from csv_importer.manifest import ImportManifest
from csv_importer.settings import ImportSettings

BUCKET = "faults-landing"
TABLE = "faults-items"
INDEX = "importSlot-index"
REGION = "us-east-1"
KEY_SCHEMA = [("id", "S")]


@dataclass
class FaultWorld:
    """Clients on one in-process moto, the bucket and the table, and ways to land, import, scan, verify."""

    s3: Any
    dynamodb: Any

    def land(self, key: str, body: bytes) -> str:
        """Put ``body`` at ``key``; returns the import id the job and the DAG derive for it."""
        self.s3.put_object(Bucket=BUCKET, Key=key, Body=body)
        etag = self.s3.head_object(Bucket=BUCKET, Key=key)["ETag"]
        return derive_import_id(BUCKET, key, etag)

    def job_clients(self) -> tuple[Any, Any]:
        return make_clients(ImportSettings(bucket=BUCKET, key="-", table=TABLE))

    def table_items(self) -> dict[str, dict[str, Any]]:
        items: dict[str, dict[str, Any]] = {}
        for page in self.dynamodb.get_paginator("scan").paginate(TableName=TABLE, ConsistentRead=True):
            for item in page["Items"]:
                items[item["id"]["S"]] = item
        return items

    def rejected(self, manifest: ImportManifest) -> list[dict[str, str]]:
        body = self.s3.get_object(Bucket=BUCKET, Key=manifest.rejected_key)["Body"].read().decode("utf-8")
        return list(csv.DictReader(io.StringIO(body)))

    def verify(self, key: str, import_id: str, shard_count: int = 1) -> VerificationResult:
        result, _totals = verify_import(
            s3_client=self.s3,
            dynamodb_client=self.dynamodb,
            bucket_name=BUCKET,
            manifest_prefix="manifests/",
            rejected_prefix="rejected/",
            s3_key=key,
            import_id=import_id,
            shard_count=shard_count,
            table_name=TABLE,
            index_name=INDEX,
            key_schema=KEY_SCHEMA,
        )
        return result


@pytest.fixture
def world() -> Iterator[FaultWorld]:
    with mock_aws():
        s3 = boto3.client("s3", region_name=REGION)
        dynamodb = boto3.client("dynamodb", region_name=REGION)
        s3.create_bucket(Bucket=BUCKET)
        ensure_table(
            dynamodb,
            table_name=TABLE,
            key_schema=[("id", "HASH", "S")],
            verification_index=INDEX,
            poll_seconds=0.05,
        )
        yield FaultWorld(s3=s3, dynamodb=dynamodb)


def csv_bytes(rows: list[list[str]]) -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(rows)
    return buffer.getvalue().encode("utf-8")
