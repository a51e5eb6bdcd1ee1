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
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from batch_import.config import load_config
from include.airflow_standalone import local_aws_connection
from include.celery_stack.services import StackError, find_postgres_binaries, find_redis_server
from include.celery_stack.stack import CeleryStack
from include.demo import PROVISION_DAG_ID
from include.demo.local_endpoint import LocalEndpointProcess
from include.demo.run import demo_environment, provision
from include.demo.stack import local_client
from include.local_aws.job_runtime import HOLD_DIR_VARIABLE
from tests.demo import process_tree
from tests.fixtures.held_jobs import IMPORT_DAG_ID, HeldJobsWorld

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
class CeleryWorld(HeldJobsWorld):
    """The running Celery stack, the endpoint, and what the tests read and break through them."""

    stack: CeleryStack

    def ensure_all_running(self) -> None:
        """Start any component a test left stopped, and wait until the whole stack is healthy again."""
        for name, component in self.stack.components.items():
            if not component.running():
                self.stack.start_component(name)
        if not self.stack.redis.ping():
            self.stack.redis.start()
        self.stack.wait_until_healthy(timeout=180)
        self.stack.wait_for_workers(self.stack.worker_names, timeout=180)


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
        yield CeleryWorld(
            stack=stack,
            endpoint=endpoint,
            client=client,
            config=config,
            s3=local_client("s3", endpoint.url, config.aws.region),
            batch=local_client("batch", endpoint.url, config.aws.region),
            hold_dir=hold_dir,
        )
    finally:
        stack.stop()
        endpoint.stop()
        left = process_tree.processes_with_files_under(home)
        assert left == [], f"processes of the stack still hold files under {home}: {left}"
