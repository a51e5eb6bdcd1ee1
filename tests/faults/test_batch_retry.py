"""A Batch attempt that fails once under ``retryStrategy`` attempts 2, on the local endpoint: the second attempt
imports the file, every row is in the table and the import verifies.

The job definition carries provisioning's own retry strategy; its command fails the first attempt the way a
network outage does (DynamoDB unreachable: ``csv-importer`` exits 75, TRANSIENT) and is the plain import on
the second (``AWS_BATCH_JOB_ATTEMPT``).
"""

from __future__ import annotations

from typing import Any

import boto3
import pytest

from batch_import.provisioning.batch import retry_strategy
from batch_import.provisioning.dynamodb import ensure_table
from csv_importer.exit_codes import ExitCode
from tests.faults.conftest import INDEX, KEY_SCHEMA, csv_bytes
from tests.local_aws.batch_jobs import create_queue, register_python_job, unique, wait_for_status

pytestmark = pytest.mark.slow

BUCKET = "faults-batch-retry"
TABLE = "faults-batch-retry-items"
UNREACHABLE = "http://127.0.0.1:9"
FAIL_FIRST_ATTEMPT = f"""
import os, sys
if os.environ["AWS_BATCH_JOB_ATTEMPT"] == "1":
    os.environ.update(AWS_ENDPOINT_URL_DYNAMODB="{UNREACHABLE}", AWS_MAX_ATTEMPTS="1")
from csv_importer.cli import main
sys.exit(main([]))
"""


def test_a_failed_first_attempt_is_retried_by_batch_and_the_import_completes(local_aws: Any) -> None:
    from batch_import.verification import verify_import
    from csv_importer.import_id import derive_import_id

    s3 = boto3.client("s3", endpoint_url=local_aws.url)
    dynamodb = boto3.client("dynamodb", endpoint_url=local_aws.url)
    batch = boto3.client("batch", endpoint_url=local_aws.url)
    s3.create_bucket(Bucket=BUCKET)
    ensure_table(
        dynamodb,
        table_name=TABLE,
        key_schema=[("id", "HASH", "S")],
        verification_index=INDEX,
        poll_seconds=0.1,
    )
    rows = [[f"r{n:05d}", str(n)] for n in range(3_000)]
    key = "incoming/2026-02-10/retried.csv"
    s3.put_object(Bucket=BUCKET, Key=key, Body=csv_bytes([["id", "amount"], *rows]))
    import_id = derive_import_id(BUCKET, key, s3.head_object(Bucket=BUCKET, Key=key)["ETag"])
    _, queue = create_queue(local_aws)
    definition = register_python_job(local_aws, FAIL_FIRST_ATTEMPT, retryStrategy=retry_strategy(2))

    job_id = batch.submit_job(
        jobName=unique("retried-import"),
        jobQueue=queue,
        jobDefinition=definition,
        containerOverrides={
            "environment": [
                {"name": "bucket_name", "value": BUCKET},
                {"name": "key", "value": key},
                {"name": "table_name", "value": TABLE},
                {"name": "import_id", "value": import_id},
            ]
        },
    )["jobId"]
    job = wait_for_status(local_aws, job_id, timeout=120)

    assert job["status"] == "SUCCEEDED", job.get("statusReason")
    exit_codes = [attempt["container"].get("exitCode") for attempt in job["attempts"]]
    assert exit_codes == [ExitCode.TRANSIENT, ExitCode.OK]
    items = {
        item["id"]["S"]: item["amount"]["S"]
        for page in dynamodb.get_paginator("scan").paginate(TableName=TABLE)
        for item in page["Items"]
    }
    assert items == {row[0]: row[1] for row in rows}
    result, totals = verify_import(
        s3_client=s3, dynamodb_client=dynamodb, bucket_name=BUCKET, manifest_prefix="manifests/",
        rejected_prefix="rejected/", s3_key=key, import_id=import_id, shard_count=1, table_name=TABLE,
        index_name=INDEX, key_schema=KEY_SCHEMA,
    )  # fmt: skip
    assert result.verified
    assert (totals.rows_read, totals.rows_imported, totals.distinct_keys, result.counted) == (len(rows),) * 4
