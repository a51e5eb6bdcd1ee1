"""One production-engine stack for the fault tests of this package: the local AWS endpoint, then
:class:`~include.celery_stack.stack.CeleryStack` (Postgres, Redis, API server, scheduler, DAG processor,
triggerer, two Celery workers), provisioned once by the ``provision_batch_environment`` DAG.

Each test lands its own files (its own dates and file names, so their Batch jobs are told apart by name), breaks
something, and leaves every component running again for the next test. Without the OS packages (``postgresql``,
``redis-server``) the tests are skipped and say what to install; with ``CI=true`` they fail instead.
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest

from batch_import.config import PipelineConfig, load_config
from batch_import.files import job_name_prefix, verified_marker_key
from csv_importer.import_id import derive_import_id
from include.airflow_standalone import AirflowRestClient, local_aws_connection
from include.celery_stack.services import StackError, find_postgres_binaries, find_redis_server
from include.celery_stack.stack import CeleryStack
from include.demo import PROVISION_DAG_ID
from include.demo.local_endpoint import LocalEndpointProcess
from include.demo.run import LOCAL_CREDENTIALS, demo_environment, provision
from include.local_aws.job_runtime import HOLD_DIR_VARIABLE
from tests.demo import process_tree
from tests.fixtures.feeds import first_feed

FEED = first_feed(load_config(environ={}))  # the feed whose DAG the engine runs (its files, its table)
IMPORT_DAG_ID = FEED.dag_id
BATCH_STATUSES = ("SUBMITTED", "PENDING", "RUNNABLE", "STARTING", "RUNNING", "SUCCEEDED", "FAILED")
# Fault-test sizing: a failed try is retried after 5 s (not 60); a scheduled run without files gives up after
# 20 s, so the daily run the unpause creates does not hold one of the DAG's active-run slots for an hour.
FAULT_SETTINGS = {
    "CSV_IMPORT__IMPORT__RETRY_DELAY_SECONDS": "5",
    "CSV_IMPORT__SCHEDULE__SENSOR_GRACE_SECONDS": "20",
    "CSV_IMPORT__SCHEDULE__SENSOR_POKE_SECONDS": "5",
}


def _ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require_os_packages() -> None:
    """Skip (fail with CI=true) when Postgres or Redis is not installed."""
    try:
        find_postgres_binaries()
        find_redis_server()
    except StackError as err:
        if _ci():
            pytest.fail(f"CI=true and {err}")
        pytest.skip(str(err))


@pytest.fixture(scope="package")
def traversable_folder() -> Iterator[Path]:
    """A fresh folder under the system temp dir that the ``postgres`` user can enter (pytest's own base folder is
    private to its user, and Postgres runs as ``postgres`` when the tests run as root); removed at the end."""
    folder = Path(tempfile.mkdtemp(prefix="celery-stack-"))
    folder.chmod(0o711)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@dataclass
class CeleryWorld:
    """The running stack, the endpoint, and what the tests read and break through them."""

    stack: CeleryStack
    endpoint: LocalEndpointProcess
    client: AirflowRestClient
    config: PipelineConfig
    s3: Any
    batch: Any
    hold_dir: Path

    def land(self, key: str, rows: int) -> str:
        """Land a CSV of ``rows`` rows at ``key``; returns its import id."""
        lines = ["id,price,quantity"] + [f"{Path(key).stem}-{n:05d},{n}.5,{n % 7}" for n in range(rows)]
        self.s3.put_object(Bucket=self.config.bucket.name, Key=key, Body=("\n".join(lines) + "\n").encode())
        etag = self.s3.head_object(Bucket=self.config.bucket.name, Key=key)["ETag"]
        return derive_import_id(self.config.bucket.name, key, etag)

    def jobs(self) -> list[dict[str, Any]]:
        """Every job on the import queue, whatever its status: each SubmitJob made one."""
        found: dict[str, dict[str, Any]] = {}
        paginator = self.batch.get_paginator("list_jobs")
        for status in BATCH_STATUSES:
            for page in paginator.paginate(jobQueue=self.config.batch.job_queue, jobStatus=status):
                for job in page["jobSummaryList"]:
                    found[job["jobId"]] = job
        return list(found.values())

    def jobs_for_file(self, key: str) -> list[dict[str, Any]]:
        """The jobs submitted for ``key`` by any run (job names start with the file name)."""
        return [job for job in self.jobs() if job["jobName"].startswith(job_name_prefix(key))]

    def hold_jobs_named(self, prefix: str) -> Path:
        """From now on, a job whose name starts with ``prefix`` starts stopped on the endpoint (it reports
        RUNNING and does nothing until released), so no test depends on catching a short job while it runs."""
        marker = self.hold_dir / prefix
        marker.touch()
        return marker

    def wait_for_held_job(self, marker: Path) -> tuple[dict[str, Any], list[process_tree.Process]]:
        """Wait until Batch reports the job held by ``marker`` (from :meth:`hold_jobs_named`) RUNNING, its
        processes stopped, then stop holding new ones (a later attempt runs freely); returns the job and its
        stopped processes, for :meth:`release`."""
        try:
            job = self.wait_for_running_job(marker.name)
            return job, self.hold_job(job["jobId"])
        finally:
            marker.unlink(missing_ok=True)

    def wait_for_running_job(self, prefix: str, *, timeout: float = 240.0) -> dict[str, Any]:
        """The first job whose name starts with ``prefix``, once Batch reports it RUNNING."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            running = [
                job for job in self.jobs() if job["jobName"].startswith(prefix) and job["status"] == "RUNNING"
            ]
            if running:
                return running[0]
            time.sleep(0.5)
        raise AssertionError(f"no RUNNING Batch job named {prefix}* within {timeout:.0f} s: {self.jobs()}")

    def job_processes(self, job_id: str) -> list[process_tree.Process]:
        """The host processes of Batch job ``job_id`` (below the endpoint, with its AWS_BATCH_JOB_ID)."""
        assert self.endpoint.pid is not None
        return [
            process
            for process in process_tree.descendants(self.endpoint.pid)
            if process_tree.environment_of(process.pid).get("AWS_BATCH_JOB_ID") == job_id
        ]

    def hold_job(self, job_id: str) -> list[process_tree.Process]:
        """SIGSTOP every process of the job: it stays RUNNING (and its import_file task waiting) until released."""
        processes = self.job_processes(job_id)
        assert processes, f"no process of Batch job {job_id} below the endpoint"
        for process in processes:
            os.kill(process.pid, signal.SIGSTOP)
        return processes

    @staticmethod
    def release(processes: list[process_tree.Process]) -> None:
        for process in process_tree.still_running(processes):
            os.kill(process.pid, signal.SIGCONT)

    def verified(self, import_id: str) -> bool:
        key = verified_marker_key(self.config.feed(FEED.name).manifest_prefix, import_id)
        listed = self.s3.list_objects_v2(Bucket=self.config.bucket.name, Prefix=key)
        return listed.get("KeyCount", 0) == 1

    def task_instance(self, run_id: str, task_id: str, map_index: int = -1) -> dict[str, Any]:
        for instance in self.client.task_instances(IMPORT_DAG_ID, run_id):
            if instance["task_id"] == task_id and instance["map_index"] == map_index:
                return instance
        raise AssertionError(f"run {run_id} has no task instance {task_id}[{map_index}]")

    def wait_for_task(
        self, run_id: str, task_id: str, *, state: str, min_try: int = 1, map_index: int = 0, timeout: float
    ) -> dict[str, Any]:
        """Wait until the task instance is in ``state`` with at least try ``min_try``."""
        deadline = time.monotonic() + timeout
        instance: dict[str, Any] = {}
        while time.monotonic() < deadline:
            try:
                instance = self.task_instance(run_id, task_id, map_index)
            except AssertionError:
                instance = {}
            if instance.get("state") == state and instance.get("try_number", 0) >= min_try:
                return instance
            time.sleep(1)
        raise AssertionError(f"{task_id}[{map_index}] of {run_id} not {state} (try >= {min_try}): {instance}")

    def trigger_day(self, day: date, conf: dict[str, Any] | None = None) -> str:
        run = self.client.trigger(IMPORT_DAG_ID, conf=conf, logical_date=f"{day.isoformat()}T00:00:00Z")
        return run["dag_run_id"]

    def ensure_all_running(self) -> None:
        """Start any component a test left stopped, and wait until the whole stack is healthy again."""
        for name, component in self.stack.components.items():
            if not component.running():
                self.stack.start_component(name)
        if not self.stack.redis.ping():
            self.stack.redis.start()
        self.stack.wait_until_healthy(timeout=180)
        self.stack.wait_for_workers(self.stack.worker_names, timeout=180)


def days_ago(days: int) -> date:
    return datetime.now(UTC).date() - timedelta(days=days)


@pytest.fixture(scope="package")
def celery_world(traversable_folder: Path) -> Iterator[CeleryWorld]:
    require_os_packages()
    home = traversable_folder / "stack"
    home.mkdir()
    hold_dir = home / "held_jobs"
    hold_dir.mkdir()
    extra_env = {**demo_environment(os.environ), **FAULT_SETTINGS, HOLD_DIR_VARIABLE: str(hold_dir)}
    config = load_config(environ={**os.environ, **extra_env})
    endpoint = LocalEndpointProcess(log_path=home / "local_aws.log", extra_env=extra_env)
    endpoint.start()
    stack = CeleryStack(
        airflow_home=home / "airflow_home",
        aws_connection=local_aws_connection(endpoint_url=endpoint.url, region_name=config.aws.region),
        extra_env={**extra_env, "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True"},
    )
    try:
        stack.start()
        client = stack.client()
        for dag_id in (PROVISION_DAG_ID, IMPORT_DAG_ID):
            client.wait_for_dag(dag_id)
        provision(client, time.monotonic())
        client.unpause(IMPORT_DAG_ID)
        clients = {
            name: boto3.client(
                name,
                endpoint_url=endpoint.url,
                region_name=config.aws.region,
                aws_access_key_id=LOCAL_CREDENTIALS,
                aws_secret_access_key=LOCAL_CREDENTIALS,
            )
            for name in ("s3", "batch")
        }
        yield CeleryWorld(
            stack=stack,
            endpoint=endpoint,
            client=client,
            config=config,
            s3=clients["s3"],
            batch=clients["batch"],
            hold_dir=hold_dir,
        )
    finally:
        stack.stop()
        endpoint.stop()
        left = process_tree.processes_with_files_under(home)
        assert left == [], f"processes of the stack still hold files under {home}: {left}"
