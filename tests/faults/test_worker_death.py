"""The Airflow worker dying while the submit task waits: the task's retry reattaches to the running Batch job.

The real ``BatchSubmitOperator`` runs in a separate process (as a worker runs a task) against the local
endpoint; it submits the import and waits. While the Batch job is RUNNING that process is killed with SIGKILL.
The retry (a new process) must find the job by its deterministic name and wait for it: one SubmitJob only,
every row imported, the import verified.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import boto3
import pytest

from batch_import.config import load_config
from batch_import.files import job_name_for
from batch_import.provisioning.batch import retry_strategy
from tests.faults.conftest import world_on_endpoint
from tests.fixtures.feeds import first_feed
from tests.local_aws.batch_jobs import create_queue, register_python_job

pytestmark = pytest.mark.slow

PROJECT_ROOT = Path(__file__).resolve().parents[2]
BUCKET = "faults-worker-death"
TABLE = "faults-worker-death-items"
DAG_ID = first_feed(load_config(environ={})).dag_id
RUN_ID = "manual__worker-death"
# The job: a few seconds of start-up, then the real import.
SLOW_IMPORT = "import sys, time\ntime.sleep(4)\nfrom csv_importer.cli import main\nsys.exit(main([]))\n"
# The submit task as a worker runs it: build the operator, execute it, print the job id it ends with.
RUN_SUBMIT_TASK = """
import json, sys
from types import SimpleNamespace
from unittest import mock
sys.path[:0] = [sys.argv[2] + "/plugins", sys.argv[2]]
from batch_import.operators import BatchSubmitOperator
arguments = json.loads(sys.argv[1])
operator = BatchSubmitOperator(task_id="import_file", **arguments["operator"])
context = {"dag": SimpleNamespace(dag_id=arguments["dag_id"]), "run_id": arguments["run_id"],
           "ti": mock.MagicMock(), "task_instance": mock.MagicMock()}
print("JOB", operator.execute(context), flush=True)
"""


def start_submit_task(arguments: dict[str, Any]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", RUN_SUBMIT_TASK, json.dumps(arguments), str(PROJECT_ROOT)],
        env=os.environ.copy(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def jobs_named(batch: Any, queue: str, name: str) -> list[dict[str, Any]]:
    """Every job of this name on the queue, whatever its status (with a filter, ListJobs ignores jobStatus)."""
    pages = batch.get_paginator("list_jobs").paginate(
        jobQueue=queue, filters=[{"name": "JOB_NAME", "values": [name]}]
    )
    return [job for page in pages for job in page["jobSummaryList"]]


def test_a_retried_submit_task_reattaches_after_the_worker_was_killed(local_aws: Any) -> None:
    world = world_on_endpoint(local_aws.url, BUCKET, TABLE)
    batch = boto3.client("batch", endpoint_url=local_aws.url)
    rows = [[f"w{n:05d}", str(n)] for n in range(2_000)]
    key = "incoming/2026-02-11/worker-death.csv"
    import_id = world.land_rows(key, rows)
    _, queue = create_queue(local_aws)
    definition = register_python_job(local_aws, SLOW_IMPORT, retryStrategy=retry_strategy(2))
    job_name = job_name_for(dag_id=DAG_ID, run_id=RUN_ID, import_id=import_id, s3_key=key)
    environment = {"bucket_name": BUCKET, "key": key, "table_name": TABLE, "import_id": import_id}
    arguments = {
        "dag_id": DAG_ID,
        "run_id": RUN_ID,
        "operator": {
            "job_name": job_name,
            "job_queue": queue,
            "job_definition": definition,
            "container_overrides": {"environment": [{"name": k, "value": v} for k, v in environment.items()]},
            "import_id": import_id,
            "s3_key": key,
            "bucket_name": BUCKET,
            "manifest_prefix": "manifests/",
            "rejected_prefix": "rejected/",
            "poll_interval": 1,
            "region_name": "us-east-1",
        },
    }

    worker = start_submit_task(arguments)
    deadline = time.monotonic() + 60
    while not [job for job in jobs_named(batch, queue, job_name) if job["status"] == "RUNNING"]:
        assert worker.poll() is None, worker.communicate()[1]
        assert time.monotonic() < deadline, "the submitted job never ran"
        time.sleep(0.1)
    worker.send_signal(signal.SIGKILL)
    worker.communicate(timeout=30)
    (first,) = jobs_named(batch, queue, job_name)
    assert first["status"] == "RUNNING"  # the job outlives the worker that submitted it

    retry = start_submit_task(arguments)
    stdout, stderr = retry.communicate(timeout=180)

    assert retry.returncode == 0, stderr
    assert f"JOB {first['jobId']}" in stdout
    assert [job["jobId"] for job in jobs_named(batch, queue, job_name)] == [first["jobId"]]
    assert batch.describe_jobs(jobs=[first["jobId"]])["jobs"][0]["status"] == "SUCCEEDED"
    items = {item_key: item["amount"]["S"] for item_key, item in world.table_items().items()}
    assert items == {row[0]: row[1] for row in rows}
    result = world.verify(key, import_id)
    assert result.verified
    assert result.counted == len(rows)
