"""End-to-end set-up: one local AWS endpoint provisioned once per module by the real provisioning DAG.

Every e2e test then runs the real import DAG with ``dag.test()`` (tasks in-process, Batch jobs as real
``csv-importer`` processes of the local endpoint) on its own landing date, so tests share the provisioned
environment without sharing data. Config overrides make runs quick: 1 s polls, a small shard threshold
(a few KB) and a short sensor grace period.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import pytest

from batch_import.config import load_config
from include.local_aws import LocalAws
from tests.fixtures.feeds import first_feed

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DAGS_FOLDER = PROJECT_ROOT / "dags"
READ_ONLY_PREFIXES = ("describe", "list", "get", "head")
REGION = "us-east-1"
_FEED = first_feed(load_config(environ={}))
E2E_CONFIG = {
    # The tests' files have their own columns: nothing typed beyond the key.
    f"CSV_IMPORT__FEEDS__{_FEED.name.upper()}__COLUMN_TYPES": "",
    "CSV_IMPORT__IMPORT__SHARD_THRESHOLD_BYTES": "4000",
    "CSV_IMPORT__IMPORT__SHARD_TARGET_BYTES": "2500",
    "CSV_IMPORT__IMPORT__MAX_SHARDS": "3",
    "CSV_IMPORT__IMPORT__POLL_INTERVAL_SECONDS": "1",
    "CSV_IMPORT__IMPORT__RETRY_DELAY_SECONDS": "1",
    # dag.test() runs the trigger in-process, with no executor whose late events the delay guards against.
    "CSV_IMPORT__IMPORT__DEFERRAL_SETTLE_SECONDS": "0",
    "CSV_IMPORT__SCHEDULE__SENSOR_GRACE_SECONDS": "3",
    "CSV_IMPORT__SCHEDULE__SENSOR_POKE_SECONDS": "1",
}


@dataclass
class Pipeline:
    """The provisioned local environment and the clients a test checks it with."""

    aws: LocalAws
    config: Any
    s3: Any
    dynamodb: Any
    batch: Any

    @property
    def feed(self) -> Any:
        """The feed these tests import (the shipped config's first)."""
        return first_feed(self.config)

    def land(self, key: str, text: str) -> str:
        body = gzip.compress(text.encode()) if key.endswith(".gz") else text.encode()
        self.s3.put_object(Bucket=self.config.bucket.name, Key=key, Body=body)
        return key

    def items_of(self, import_id: str | None = None) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        for page in self.dynamodb.get_paginator("scan").paginate(TableName=self.feed.table.name):
            items.extend(page["Items"])
        if import_id is None:
            return items
        return [item for item in items if item["importId"]["S"] == import_id]

    def jobs_named(self, prefix: str) -> list[dict[str, Any]]:
        pages = self.batch.get_paginator("list_jobs").paginate(
            jobQueue=self.config.batch.job_queue, filters=[{"name": "JOB_NAME", "values": [f"{prefix}*"]}]
        )
        return [job for page in pages for job in page["jobSummaryList"]]

    def array_jobs_named(self, prefix: str) -> list[dict[str, Any]]:
        """The array (parent) jobs among :meth:`jobs_named`, described."""
        job_ids = [job["jobId"] for job in self.jobs_named(prefix)]
        described = self.batch.describe_jobs(jobs=job_ids)["jobs"] if job_ids else []
        return [job for job in described if "size" in job.get("arrayProperties", {})]

    def run_import(self, date: str, *, without_logical_date: bool = False, **conf: Any) -> Any:
        """``dag.test()`` of the import DAG for ``date``; returns the finished DagRun.

        ``without_logical_date`` makes a run like a REST trigger with ``logical_date: null``, queued for
        (``run_after``) ``date``.
        """
        dag = parse_dag(self.feed.dag_id)
        when = datetime.fromisoformat(date).replace(tzinfo=UTC)
        if without_logical_date:
            return dag.test(logical_date=None, run_after=when.replace(hour=6), run_conf=conf or None)
        return dag.test(logical_date=when, run_conf=conf or None)


def parse_dag(dag_id: str) -> Any:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAGS_FOLDER))
    assert not bag.import_errors, bag.import_errors
    return bag.dags[dag_id]


def task_states(dag_run: Any) -> dict[str, list[tuple[str | None, int]]]:
    """``{task_id: [(state, try_number) per map index]}`` of a finished run, read from the metadata DB."""
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        rows = session.execute(
            select(TaskInstance.task_id, TaskInstance.map_index, TaskInstance.state, TaskInstance.try_number)
            .where(TaskInstance.dag_id == dag_run.dag_id, TaskInstance.run_id == dag_run.run_id)
            .order_by(TaskInstance.task_id, TaskInstance.map_index)
        ).all()
    states: dict[str, list[tuple[str | None, int]]] = {}
    for task_id, _, state, try_number in rows:
        states.setdefault(task_id, []).append((str(state) if state else None, try_number))
    return states


def csv_text(header: list[str], rows: list[list[str]]) -> str:
    import csv

    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue()


@pytest.fixture(scope="module")
def pipeline(local_aws_server: LocalAws, airflow_db: None) -> Iterator[Pipeline]:
    with pytest.MonkeyPatch.context() as env:
        local_aws_server.reset()
        env.delenv("AWS_PROFILE", raising=False)
        env.setenv("AWS_ENDPOINT_URL", local_aws_server.url)
        env.setenv("AWS_ACCESS_KEY_ID", "testing")
        env.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        env.setenv("AWS_DEFAULT_REGION", REGION)
        # Job processes run `csv-importer` from PATH: the project's virtual environment comes first.
        env.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
        env.setenv(
            "AIRFLOW_CONN_AWS_DEFAULT",
            json.dumps(
                {
                    "conn_type": "aws",
                    "login": "testing",
                    "password": "testing",
                    "extra": {"region_name": REGION, "endpoint_url": local_aws_server.url},
                }
            ),
        )
        for name, value in E2E_CONFIG.items():
            env.setenv(name, value)
        provisioned = parse_dag("provision_batch_environment").test()
        assert str(provisioned.state) == "success", task_states(provisioned)
        client_kwargs = {"endpoint_url": local_aws_server.url, "region_name": REGION}
        yield Pipeline(
            aws=local_aws_server,
            config=load_config(),
            s3=boto3.client("s3", **client_kwargs),
            dynamodb=boto3.client("dynamodb", **client_kwargs),
            batch=boto3.client("batch", **client_kwargs),
        )
        local_aws_server.stop_jobs("e2e module finished")


@dataclass(frozen=True)
class Endpoint:
    """``python -m include.local_aws`` as a user starts it, in its own process; it records requests on demand."""

    url: str
    recording: Path

    def start_recording(self) -> None:
        self._moto_api("reset-recording")
        self._moto_api("start-recording")

    def stop_recording(self) -> list[dict[str, Any]]:
        """Every request received since :meth:`start_recording` (moto's recorder: method, url, headers, body)."""
        self._moto_api("stop-recording")
        text = self.recording.read_text() if self.recording.exists() else ""
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    def _moto_api(self, action: str) -> None:
        request = urllib.request.Request(f"{self.url}/moto-api/recorder/{action}", method="POST", data=b"")
        with urllib.request.urlopen(request, timeout=30) as answer:
            answer.read()


def operation_of(request: dict[str, Any]) -> str:
    """The AWS operation of a recorded request: ``dynamodb:DescribeTable``, ``iam:GetRole``, ``s3:GET`` ..."""
    import base64
    from urllib.parse import parse_qs, urlparse

    headers = {name.lower(): value for name, value in request["headers"].items()}
    target = headers.get("x-amz-target")
    if target:  # JSON protocols: DynamoDB_20120810.DescribeTable, Logs_20140328.DescribeLogGroups
        service, _, operation = target.partition(".")
        return f"{service.split('_')[0].lower()}:{operation}"
    body = request.get("body") or ""
    if request.get("body_encoded"):
        body = base64.b64decode(body).decode("utf-8", "replace")
    action = parse_qs(body).get("Action") or parse_qs(urlparse(request["url"]).query).get("Action")
    if action:  # query protocols: IAM, STS, EC2
        return f"query:{action[0]}"
    path = urlparse(request["url"]).path
    if path.startswith("/v1/"):  # Batch (REST-JSON): /v1/describecomputeenvironments
        return f"batch:{path.removeprefix('/v1/')}"
    return f"s3:{request['method']}"


def is_mutating(request: dict[str, Any]) -> bool:
    operation = operation_of(request).split(":", 1)[1]
    if operation_of(request).startswith("s3:"):
        return operation not in ("GET", "HEAD")
    return not operation.lower().startswith(READ_ONLY_PREFIXES)


@pytest.fixture
def endpoint(tmp_path: Path) -> Iterator[Endpoint]:
    recording = tmp_path / "requests.jsonl"
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("CSV_IMPORT", "AWS_ENDPOINT", "MOTO_"))
    }
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["MOTO_RECORDER_FILEPATH"] = str(recording)
    server = subprocess.Popen(
        [sys.executable, "-m", "include.local_aws", "--port", "0"],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=(tmp_path / "local_aws.log").open("w"),
        text=True,
        start_new_session=True,
    )
    try:
        assert server.stdout is not None
        url = server.stdout.readline().strip()
        assert url.startswith("http://"), (
            f"local endpoint did not start: {(tmp_path / 'local_aws.log').read_text()}"
        )
        yield Endpoint(url=url, recording=recording)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


@pytest.fixture
def endpoint_url(endpoint: Endpoint) -> str:
    return endpoint.url
