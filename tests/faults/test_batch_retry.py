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
from csv_importer.exit_codes import ExitCode
from tests.faults.conftest import world_on_endpoint
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
    world = world_on_endpoint(local_aws.url, BUCKET, TABLE)
    batch = boto3.client("batch", endpoint_url=local_aws.url)
    rows = [[f"r{n:05d}", str(n)] for n in range(3_000)]
    key = "incoming/2026-02-10/retried.csv"
    import_id = world.land_rows(key, rows)
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
    items = {item_key: item["amount"]["S"] for item_key, item in world.table_items().items()}
    assert items == {row[0]: row[1] for row in rows}
    result, totals = world.verify_with_totals(key, import_id)
    assert result.verified
    assert (totals.rows_read, totals.rows_imported, totals.distinct_keys, result.counted) == (len(rows),) * 4
