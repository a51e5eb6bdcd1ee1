"""Run ``airflow standalone`` for the demo and the end-to-end tests, and talk to it over REST API v2.

:class:`AirflowStandalone` starts Airflow (scheduler, DAG processor, triggerer, API server; it returns once each
one is healthy, and ``import_file`` defers to the triggerer) in its own process group with a fresh
``AIRFLOW_HOME``: SQLite, LocalExecutor, a small ``parallelism`` for a 2-core machine, the API server on
127.0.0.1 and a free port (with ``AIRFLOW__API__BASE_URL`` set so workers reach the Execution API there), the
project's ``dags/`` and ``plugins/``, DAGs unpaused at creation, a short DAG-folder refresh, fixed local admin
credentials written to the simple auth manager's passwords file, and ``aws_default`` pointing at the given AWS
endpoint.

:class:`AirflowRestClient` is the small slice of the REST API the demo and tests use: token, DAG presence,
trigger, backfill, waiting for runs, task instances, their logs and XComs.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import requests

log = logging.getLogger(__name__)

PROJECT_ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent

TERMINAL_RUN_STATES = frozenset({"success", "failed"})
HEALTHY = "healthy"
SQLITE_LOCKED_ATTEMPTS = 8
# A DAG has one running backfill at a time, and the scheduler marks an ended one complete every 30 s.
RUNNING_BACKFILL = "There is already a running backfill"
PREVIOUS_BACKFILL_WAIT_SECONDS = 90.0
# How long a write to standalone's SQLite database waits for another component's write lock before failing with
# "database is locked" (pysqlite's default is 5 s: the scheduler, triggerer, DAG processor and API server share
# one file, and under a busy test machine a 5 s wait lost, answering a dagRuns POST with HTTP 500).
SQLITE_BUSY_TIMEOUT_SECONDS = 30
# Components /api/v2/monitor/health reports; all must be healthy before the instance is usable.
HEALTH_COMPONENTS = ("metadatabase", "scheduler", "triggerer", "dag_processor")


class AirflowStandaloneError(RuntimeError):
    """Airflow standalone did not start, stopped unexpectedly, or an API call failed; the message says which."""


class AirflowApiError(AirflowStandaloneError):
    """A REST API call answered with an error status (``status_code``); the message names the call."""

    def __init__(self, message: str, *, status_code: int) -> None:
        super().__init__(message)
        self.status_code = status_code


@dataclass(frozen=True)
class AdminLogin:
    """The local admin login written to the simple auth manager's passwords file (local instances only)."""

    username: str = "admin"
    password: str = "admin"


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free on ``host`` a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def local_aws_connection(*, endpoint_url: str, region_name: str, access_key: str = "local") -> str:
    """``AIRFLOW_CONN_AWS_DEFAULT`` (JSON form) for a local AWS endpoint that accepts any credentials.

    Every service's endpoint: the tasks' hooks use it, and so does the triggerer, whose AssetWatchers receive the
    feeds' S3 events from SQS through the same connection (aiobotocore honours ``endpoint_url`` too).
    """
    return json.dumps(
        {
            "conn_type": "aws",
            "login": access_key,
            "password": access_key,
            "extra": {"region_name": region_name, "endpoint_url": endpoint_url},
        }
    )


class AirflowStandalone:
    """``airflow standalone`` in its own process group; a context manager that stops everything it started.

    :param airflow_home: a directory for this instance only (metadata DB, logs, config); created if missing.
    :param aws_connection: value for ``AIRFLOW_CONN_AWS_DEFAULT`` (see :func:`local_aws_connection`).
    :param port: API server port; 0 picks a free one.
    :param parallelism: ``[core] parallelism``, the LocalExecutor's worker processes.
    :param extra_env: more environment for Airflow and its tasks (e.g. ``CSV_IMPORT__...`` overrides).
    :param login: the admin login to pre-write.
    :param log_path: where standalone's combined output goes (default ``<airflow_home>/standalone.log``).
    """

    def __init__(
        self,
        *,
        airflow_home: Path,
        aws_connection: str,
        port: int = 0,
        parallelism: int = 4,
        extra_env: Mapping[str, str] | None = None,
        login: AdminLogin | None = None,
        log_path: Path | None = None,
        host: str = "127.0.0.1",
    ) -> None:
        self.airflow_home = airflow_home
        self.aws_connection = aws_connection
        self.port = port
        self.parallelism = parallelism
        self.extra_env = dict(extra_env or {})
        self.login = login or AdminLogin()
        self.log_path = log_path
        self.host = host
        self._process: subprocess.Popen[bytes] | None = None
        self._log_file: Any = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def environment(self) -> dict[str, str]:
        """The process environment for standalone: the caller's, minus any Airflow settings, plus ours."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW__", "AIRFLOW_CONN_"))}
        env.pop("AIRFLOW_HOME", None)
        # standalone spawns `airflow <command>` through PATH; this interpreter's bin must come first.
        env["PATH"] = os.pathsep.join([str(VENV_BIN), env.get("PATH", "")])
        env.update(
            {
                "AIRFLOW_HOME": str(self.airflow_home),
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": (
                    f"sqlite:///{self.airflow_home / 'airflow.db'}?timeout={SQLITE_BUSY_TIMEOUT_SECONDS}"
                ),
                # A database error's statement and cause in the API's answer, not only in its log: this instance
                # listens on loopback for the demo and the tests, whose failures then say what failed.
                "AIRFLOW__API__EXPOSE_STACKTRACE": "True",
                "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
                "AIRFLOW__CORE__PARALLELISM": str(self.parallelism),
                "AIRFLOW__CORE__DAGS_FOLDER": str(PROJECT_ROOT / "dags"),
                "AIRFLOW__CORE__PLUGINS_FOLDER": str(PROJECT_ROOT / "plugins"),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__CORE__LOAD_DEFAULT_CONNECTIONS": "False",
                "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{self.login.username}:admin",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(self._passwords_file),
                "AIRFLOW__API__HOST": self.host,
                "AIRFLOW__API__PORT": str(self.port),
                "AIRFLOW__API__BASE_URL": self.url,
                # serve-logs defaults to fixed ports 8793/8794: two instances on one machine would collide.
                "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port(self.host)),
                "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port(self.host)),
                "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
                "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "10",
                "AIRFLOW_CONN_AWS_DEFAULT": self.aws_connection,
            }
        )
        env.update(self.extra_env)
        return env

    @property
    def _passwords_file(self) -> Path:
        return self.airflow_home / "simple_auth_manager_passwords.json"

    def start(self, *, timeout: float = 180.0) -> None:
        """Start standalone and return once every component reports healthy."""
        if self._process is not None:
            raise AirflowStandaloneError(f"Airflow standalone is already running (pid {self._process.pid})")
        if self.port == 0:
            self.port = free_port(self.host)
        self.airflow_home.mkdir(parents=True, exist_ok=True)
        self._passwords_file.write_text(json.dumps({self.login.username: self.login.password}))
        airflow = shutil.which("airflow", path=str(VENV_BIN)) or "airflow"
        log_path = self.log_path or self.airflow_home / "standalone.log"
        self._log_file = log_path.open("ab")
        log.info(
            "Starting Airflow standalone on %s (AIRFLOW_HOME %s, log %s)",
            self.url,
            self.airflow_home,
            log_path,
        )
        self._process = subprocess.Popen(
            [airflow, "standalone"],
            env=self.environment(),
            cwd=PROJECT_ROOT,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            self.wait_until_healthy(timeout=timeout)
        except BaseException:
            self.stop()
            raise

    def wait_until_healthy(self, *, timeout: float) -> None:
        """Poll ``/api/v2/monitor/health`` until the DB, scheduler, triggerer and DAG processor are healthy."""
        deadline = time.monotonic() + timeout
        last_seen = "no answer yet"
        while time.monotonic() < deadline:
            self._raise_if_exited()
            try:
                response = requests.get(f"{self.url}/api/v2/monitor/health", timeout=5)
                if response.ok:
                    health = response.json()
                    states = {name: (health.get(name) or {}).get("status") for name in HEALTH_COMPONENTS}
                    if all(state == HEALTHY for state in states.values()):
                        log.info("Airflow standalone is healthy at %s", self.url)
                        return
                    last_seen = str(states)
                else:
                    last_seen = f"HTTP {response.status_code}"
            except requests.RequestException as err:
                last_seen = type(err).__name__
            time.sleep(1)
        raise AirflowStandaloneError(
            f"Airflow standalone at {self.url} not healthy after {timeout:.0f} s (last: {last_seen}); "
            f"log tail:\n{self.log_tail()}"
        )

    def _raise_if_exited(self) -> None:
        if self._process is not None and self._process.poll() is not None:
            raise AirflowStandaloneError(
                f"Airflow standalone exited with code {self._process.returncode}; log tail:\n{self.log_tail()}"
            )

    def log_tail(self, lines: int = 40) -> str:
        log_path = self.log_path or self.airflow_home / "standalone.log"
        try:
            text = log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, *, timeout: float = 30.0) -> None:
        """SIGTERM the whole process group, wait, then SIGKILL whatever is left."""
        process, self._process = self._process, None
        if process is not None:
            stop_process_group(process, timeout=timeout)
            log.info("Airflow standalone (pid %s) stopped", process.pid)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def client(self) -> AirflowRestClient:
        return AirflowRestClient(base_url=self.url, login=self.login)

    def __enter__(self) -> AirflowStandalone:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def stop_process_group(process: subprocess.Popen[Any], *, timeout: float) -> None:
    """Stop a process started with ``start_new_session=True`` and everything in its group."""
    pgid = process.pid  # session leader: its pid is the group id
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            process.poll()
            if not group_alive(pgid):
                return
            time.sleep(0.2)
    process.poll()


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class AirflowRestClient:
    """The REST API v2 calls the demo and tests make, with a bearer token from ``/auth/token``."""

    def __init__(self, *, base_url: str, login: AdminLogin, request_timeout: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.login = login
        self.request_timeout = request_timeout
        self._session = requests.Session()
        self._token: str | None = None

    def token(self) -> str:
        if self._token is None:
            response = self._session.post(
                f"{self.base_url}/auth/token",
                json={"username": self.login.username, "password": self.login.password},
                timeout=self.request_timeout,
            )
            self._check(response, "POST /auth/token")
            self._token = response.json()["access_token"]
        return self._token

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        headers = {"Authorization": f"Bearer {self.token()}"}
        response = self._session.request(
            method, f"{self.base_url}{path}", headers=headers, timeout=self.request_timeout, **kwargs
        )
        self._check(response, f"{method} {path}")
        return response.json() if response.content else None

    @staticmethod
    def _check(response: requests.Response, what: str) -> None:
        if not response.ok:
            raise AirflowApiError(
                f"{what} answered HTTP {response.status_code}: {response.text[:2000]}",
                status_code=response.status_code,
            )

    def wait_for_dag(self, dag_id: str, *, timeout: float = 120.0) -> dict[str, Any]:
        """Wait until the DAG processor has parsed ``dag_id`` (import errors are reported by name)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.request("GET", "/api/v2/dags", params={"dag_id_pattern": dag_id})
            for dag in found.get("dags", []):
                if dag["dag_id"] == dag_id:
                    return dag
            time.sleep(2)
        errors = self.request("GET", "/api/v2/importErrors").get("import_errors", [])
        details = "; ".join(f"{e.get('filename')}: {str(e.get('stack_trace'))[-500:]}" for e in errors)
        raise AirflowStandaloneError(
            f"DAG {dag_id} was not parsed within {timeout:.0f} s; import errors: {details or 'none'}"
        )

    def unpause(self, dag_id: str) -> None:
        self.request("PATCH", f"/api/v2/dags/{dag_id}", json={"is_paused": False})

    def pause(self, dag_id: str) -> None:
        self.request("PATCH", f"/api/v2/dags/{dag_id}", json={"is_paused": True})

    def trigger(
        self, dag_id: str, *, conf: Mapping[str, Any] | None = None, logical_date: str | None = None
    ) -> dict[str, Any]:
        """Trigger a run; ``logical_date`` None makes a run without a data interval."""
        body = {"logical_date": logical_date, "conf": dict(conf or {})}
        return self.request("POST", f"/api/v2/dags/{dag_id}/dagRuns", json=body)

    def create_backfill(
        self,
        dag_id: str,
        *,
        from_date: str,
        to_date: str,
        max_active_runs: int = 2,
        reprocess_behavior: str = "none",
        dag_run_conf: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Create a backfill (both dates inclusive); the scheduler runs it once the DAG is unpaused.

        On SQLite the API answers 503 "Database is locked" when a scheduler write wins; Airflow then deletes the
        runs it had created already, and the creation is retried. A scheduler that has picked those runs up dies
        on the deletion (ObjectDeletedError in its loop, seen with Airflow 3.3.2), so call this with the DAG
        paused: the scheduler leaves a paused DAG's runs alone (see :meth:`backfill_while_paused`).
        """
        body = {
            "dag_id": dag_id,
            "from_date": from_date,
            "to_date": to_date,
            "run_backwards": False,
            "dag_run_conf": dict(dag_run_conf or {}),
            "reprocess_behavior": reprocess_behavior,
            "max_active_runs": max_active_runs,
        }
        attempt = 1
        previous_deadline = time.monotonic() + PREVIOUS_BACKFILL_WAIT_SECONDS
        while True:
            try:
                return self.request("POST", "/api/v2/backfills", json=body)
            except AirflowApiError as err:
                if err.status_code == 409 and RUNNING_BACKFILL in str(err):
                    # The DAG's previous backfill has ended (wait_for_backfill) but is not marked yet.
                    if time.monotonic() > previous_deadline:
                        raise
                    time.sleep(3.0)
                    continue
                if err.status_code != 503 or attempt >= SQLITE_LOCKED_ATTEMPTS:
                    raise
                log.info("Backfill creation refused (%s), attempt %d; retrying", err, attempt)
                time.sleep(2.0 * attempt)
                attempt += 1

    def backfill_while_paused(self, dag_id: str, **options: Any) -> dict[str, Any]:
        """:meth:`create_backfill` with ``dag_id`` paused meanwhile, then unpaused (also when creation failed)."""
        self.pause(dag_id)
        try:
            return self.create_backfill(dag_id, **options)
        finally:
            self.unpause(dag_id)

    def backfill(self, backfill_id: int) -> dict[str, Any]:
        return self.request("GET", f"/api/v2/backfills/{backfill_id}")

    def dag_run(self, dag_id: str, run_id: str) -> dict[str, Any]:
        return self.request("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}")

    def dag_runs(self, dag_id: str, **filters: Any) -> list[dict[str, Any]]:
        params = {"limit": 100, **filters}
        return self.request("GET", f"/api/v2/dags/{dag_id}/dagRuns", params=params)["dag_runs"]

    def wait_for_runs(self, dag_id: str, run_ids: Iterable[str], *, timeout: float) -> list[dict[str, Any]]:
        """Wait until every named run is success or failed; return them in the given order."""
        pending = list(run_ids)
        finished: dict[str, dict[str, Any]] = {}
        deadline = time.monotonic() + timeout
        while pending:
            for run_id in list(pending):
                run = self.dag_run(dag_id, run_id)
                if run["state"] in TERMINAL_RUN_STATES:
                    finished[run_id] = run
                    pending.remove(run_id)
            if not pending:
                break
            if time.monotonic() > deadline:
                raise AirflowStandaloneError(
                    f"runs of {dag_id} still not finished after {timeout:.0f} s: {', '.join(pending)}"
                )
            time.sleep(2)
        return [finished[run_id] for run_id in finished]

    def wait_for_backfill(self, backfill: Mapping[str, Any], *, timeout: float) -> list[dict[str, Any]]:
        """Wait until every run of the backfill has ended, or the scheduler marked it complete; return its runs,
        oldest first.

        The scheduler marks a backfill complete on a 30 s interval of its own (``_mark_backfills_complete``), so
        its runs' states answer sooner; the API creates every run of a backfill before it answers the creation.
        A backfill that made no run (each date had one) ends when it is marked.
        """
        deadline = time.monotonic() + timeout
        while True:
            runs = self.dag_runs(
                backfill["dag_id"],
                run_type="backfill",
                logical_date_gte=backfill["from_date"],
                logical_date_lte=backfill["to_date"],
                order_by="logical_date",
            )
            if runs and all(run["state"] in TERMINAL_RUN_STATES for run in runs):
                return runs
            if self.backfill(backfill["id"]).get("completed_at") is not None:
                return runs
            if time.monotonic() > deadline:
                raise AirflowStandaloneError(
                    f"backfill {backfill['id']} of {backfill['dag_id']} not complete after {timeout:.0f} s"
                )
            time.sleep(3)

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        return self.request(
            "GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances", params={"limit": 1000}
        )["task_instances"]

    def task_log(
        self, dag_id: str, run_id: str, task_id: str, *, try_number: int, map_index: int = -1
    ) -> str:
        """One try's task log as text, one line per log event (``event``, and ``error_detail`` when present)."""
        path = f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/logs/{try_number}"
        answer = self.request("GET", path, params={"map_index": map_index, "full_content": True})
        lines = []
        for entry in answer.get("content", []):
            if isinstance(entry, dict):
                lines.append(
                    " ".join(str(entry[field]) for field in ("event", "error_detail") if field in entry)
                )
            else:
                lines.append(str(entry))
        return "\n".join(lines)

    def xcom(
        self, dag_id: str, run_id: str, task_id: str, *, key: str = "return_value", map_index: int = -1
    ) -> Any:
        """An XCom's value, or None when the task pushed none."""
        path = f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/{key}"
        try:
            entry = self.request("GET", path, params={"map_index": map_index, "deserialize": True})
        except AirflowApiError as err:
            if err.status_code == 404:
                return None
            raise
        return entry.get("value")
