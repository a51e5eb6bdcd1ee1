"""Airflow on the production engine as plain processes: Postgres, Redis, and one process per Airflow component.

:class:`CeleryStack` is a drop-in for :class:`~include.airflow_standalone.AirflowStandalone` (same constructor
arguments, ``start``/``stop``, ``url``, ``login``, ``client``): the same project folders, login and AWS
connection, but instead of ``airflow standalone`` it starts

- Postgres (metadata database and Celery's result backend) and Redis (the Celery broker), see
  :mod:`include.celery_stack.services`;
- ``airflow db migrate``, then ``airflow api-server``, ``scheduler``, ``dag-processor``, ``triggerer`` and
  two ``airflow celery worker`` (``worker-1``, ``worker-2``), each in its own process group with its own log,

all on loopback and free ports, all data under the folder holding ``airflow_home``, with the engine's settings
from ``include/config/airflow_celery.toml`` (:mod:`include.celery_stack.settings`). Components can be killed and
started again one by one (:meth:`CeleryStack.kill`, :meth:`CeleryStack.start_component`), and Redis restarted
(:meth:`CeleryStack.restart_redis`), for the fault tests.

Each worker reports its own name as the task instances' ``hostname`` (``[core] hostname_callable`` =
:func:`include.celery_stack.hostname.worker_hostname`), so the REST API shows which worker ran what.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

from include.airflow_standalone import (
    PROJECT_ROOT,
    VENV_BIN,
    AdminLogin,
    AirflowStandalone,
    AirflowStandaloneError,
    free_port,
    group_alive,
)
from include.celery_stack.hostname import HOSTNAME_VARIABLE
from include.celery_stack.services import PostgresServer, RedisServer, StackError, find_redis_server
from include.celery_stack.settings import StackAddresses, airflow_settings, database_login

log = logging.getLogger(__name__)

WORKERS = ("worker-1", "worker-2")
SERVER_COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")
COMPONENTS = (*SERVER_COMPONENTS, *WORKERS)
MIGRATE_TIMEOUT = 300.0


class Component:
    """One Airflow component: its command, extra environment, process (own group) and log."""

    def __init__(self, name: str, command: list[str], *, log_path: Path, env: Mapping[str, str]) -> None:
        self.name = name
        self.command = command
        self.log_path = log_path
        self.env = dict(env)
        self.process: subprocess.Popen[bytes] | None = None
        self._log_file: IO[Any] | None = None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def start(self, base_env: Mapping[str, str]) -> None:
        if self.process is not None and self.process.poll() is None:
            raise StackError(f"{self.name} is already running (pid {self.process.pid})")
        self._close_log()
        self._log_file = self.log_path.open("ab")
        self.process = subprocess.Popen(
            self.command,
            env={**base_env, **self.env},
            cwd=PROJECT_ROOT,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        log.info("%s started (pid %s, log %s)", self.name, self.process.pid, self.log_path)

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def signal_group(self, sig: signal.Signals) -> None:
        if self.process is not None:
            try:
                os.killpg(self.process.pid, sig)
            except ProcessLookupError:
                pass

    def group_gone(self) -> bool:
        if self.process is None:
            return True
        self.process.poll()
        return not group_alive(self.process.pid)

    def forget(self) -> None:
        """After the whole group has ended: reap and close the log."""
        if self.process is not None:
            self.process.poll()
        self.process = None
        self._close_log()

    def _close_log(self) -> None:
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None


def stop_components(components: list[Component], *, timeout: float) -> None:
    """SIGTERM every group at once, wait up to ``timeout`` for all, SIGKILL what is left, wait for that too."""
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 15.0)):
        pending = [c for c in components if not c.group_gone()]
        for component in pending:
            component.signal_group(sig)
        deadline = time.monotonic() + wait
        while pending and time.monotonic() < deadline:
            time.sleep(0.2)
            pending = [c for c in pending if not c.group_gone()]
        if pending and sig == signal.SIGTERM:
            log.warning(
                "Still running after SIGTERM: %s; sending SIGKILL", ", ".join(c.name for c in pending)
            )
    for component in components:
        component.forget()


class CeleryStack(AirflowStandalone):
    """Postgres, Redis and the Airflow components as separate processes; stops everything it started.

    :param airflow_home: this instance's ``AIRFLOW_HOME``; Postgres' and Redis' data and the component logs go
        next to it (its parent folder), under ``postgres/``, ``redis/`` and ``logs/``.
    :param log_path: ignored (each component has its own log under ``logs/``); accepted for the same signature.
    Other parameters: see :class:`~include.airflow_standalone.AirflowStandalone`.
    """

    def __init__(
        self,
        *,
        airflow_home: Path,
        aws_connection: str,
        port: int = 0,
        parallelism: int = 0,
        extra_env: Mapping[str, str] | None = None,
        login: AdminLogin | None = None,
        log_path: Path | None = None,
        host: str = "127.0.0.1",
    ) -> None:
        super().__init__(
            airflow_home=airflow_home,
            aws_connection=aws_connection,
            port=port,
            parallelism=parallelism,
            extra_env=extra_env,
            login=login,
            log_path=log_path,
            host=host,
        )
        self.base_folder = airflow_home.parent
        self.log_dir = self.base_folder / "logs"
        self.postgres = PostgresServer(
            folder=self.base_folder / "postgres", login=database_login(), host=host
        )
        self.redis = RedisServer(folder=self.base_folder / "redis", host=host)
        find_redis_server()  # a missing OS package fails here, before anything starts
        self.worker_names = WORKERS
        self.components: dict[str, Component] = {}
        self._env: dict[str, str] | None = None

    @property
    def addresses(self) -> StackAddresses:
        return StackAddresses(
            postgres=self.postgres.address, redis=self.redis.address, api_server=f"{self.host}:{self.port}"
        )

    def environment(self) -> dict[str, str]:
        """Standalone's environment (folders, login, connection), with the production engine's settings."""
        env = super().environment()
        settings = airflow_settings(self.addresses)
        if self.parallelism:
            settings["AIRFLOW__CORE__PARALLELISM"] = str(self.parallelism)
        env.update(settings)
        env.update(
            {
                # One API server worker process is plenty on 2 cores (default 4).
                "AIRFLOW__API__WORKERS": "1",
                # A worker that dies is noticed within 30 s (heartbeat timeout) instead of 5 minutes.
                "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "30",
                "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "5",
                "AIRFLOW__CORE__HOSTNAME_CALLABLE": "include.celery_stack.hostname.worker_hostname",
                "PYTHONPATH": os.pathsep.join(
                    p for p in (str(PROJECT_ROOT), os.environ.get("PYTHONPATH")) if p
                ),
            }
        )
        env.update(self.extra_env)
        return env

    @property
    def broker_url(self) -> str:
        return airflow_settings(self.addresses)["AIRFLOW__CELERY__BROKER_URL"]

    def _components(self) -> dict[str, Component]:
        airflow = str(VENV_BIN / "airflow")
        components = {
            name: Component(
                name,
                [airflow, name],
                log_path=self.log_dir / f"{name}.log",
                env={HOSTNAME_VARIABLE: f"{name}.{socket.gethostname()}"},
            )
            for name in SERVER_COMPONENTS
        }
        for name in WORKERS:
            components[name] = Component(
                name,
                [airflow, "celery", "worker", "--celery-hostname", self.worker_node_name(name)],
                log_path=self.log_dir / f"{name}.log",
                env={
                    HOSTNAME_VARIABLE: name,
                    # each worker's own log server (serve-logs) port
                    "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port(self.host)),
                },
            )
        return components

    @staticmethod
    def worker_node_name(worker: str) -> str:
        """The Celery node name of ``worker`` (what ``celery inspect ping`` answers with)."""
        return f"{worker}@{socket.gethostname()}"

    def start(self, *, timeout: float = 300.0) -> None:
        """Start everything, in order, and return once every component is healthy and both workers answer."""
        if self.components:
            raise AirflowStandaloneError("the stack is already running")
        self.airflow_home.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._passwords_file.write_text(json.dumps({self.login.username: self.login.password}))
        try:
            self.postgres.start()
            self.redis.start()
            if self.port == 0:
                self.port = free_port(self.host)
            self._env = self.environment()
            self._migrate()
            self.components = self._components()
            for component in self.components.values():
                component.start(self._env)
            self.wait_until_healthy(timeout=timeout)
            self.wait_for_workers(WORKERS, timeout=timeout)
        except BaseException:
            self.stop()
            raise
        log.info("Celery stack healthy at %s", self.url)

    def _migrate(self) -> None:
        assert self._env is not None
        log_path = self.log_dir / "db-migrate.log"
        with log_path.open("ab") as output:
            result = subprocess.run(
                [str(VENV_BIN / "airflow"), "db", "migrate"],
                env=self._env,
                cwd=PROJECT_ROOT,
                stdout=output,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                timeout=MIGRATE_TIMEOUT,
                check=False,
            )
        if result.returncode != 0:
            tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-30:])
            raise StackError(f"airflow db migrate failed (exit {result.returncode}); {log_path}:\n{tail}")

    def _raise_if_exited(self) -> None:
        for service in (self.postgres, self.redis):
            service.raise_if_exited()
        for component in self.components.values():
            if component.process is not None and component.process.poll() is not None:
                tail = "\n".join(component.log_path.read_text(errors="replace").splitlines()[-40:])
                raise StackError(
                    f"{component.name} exited with code {component.process.returncode}; "
                    f"{component.log_path}:\n{tail}"
                )

    def log_tail(self, lines: int = 40) -> str:
        tails = []
        for name in ("api-server", "scheduler"):
            path = self.log_dir / f"{name}.log"
            if path.exists():
                text = "\n".join(path.read_text(errors="replace").splitlines()[-lines // 2 :])
                tails.append(f"--- {path}\n{text}")
        return "\n".join(tails) or "(no log)"

    def ping_workers(self, timeout: float = 2.0) -> set[str]:
        """The Celery node names that answer a broadcast ping now."""
        import redis
        from celery import Celery
        from kombu.exceptions import OperationalError

        app = Celery(broker=self.broker_url)
        try:
            replies = app.control.ping(timeout=timeout) or []
        except (OSError, OperationalError, redis.RedisError) as err:
            log.info("Celery ping failed (%s); the broker may be restarting", err)
            return set()
        finally:
            app.close()
        return {name for reply in replies for name in reply}

    def wait_for_workers(self, workers: tuple[str, ...] | list[str], *, timeout: float) -> None:
        wanted = {self.worker_node_name(worker) for worker in workers}
        deadline = time.monotonic() + timeout
        answered: set[str] = set()
        while not wanted <= answered:
            self._raise_if_exited()
            if time.monotonic() > deadline:
                raise StackError(
                    f"Celery workers {sorted(wanted - answered)} did not answer a ping within {timeout:.0f} s"
                )
            answered = self.ping_workers()
        log.info("Celery workers answer: %s", ", ".join(sorted(answered)))

    def kill(self, name: str) -> int:
        """SIGKILL the whole process group of component ``name`` (as a lost container or node); returns its pid."""
        component = self.components[name]
        if component.process is None:
            raise StackError(f"{name} is not running")
        pid = component.process.pid
        component.signal_group(signal.SIGKILL)
        deadline = time.monotonic() + 15
        while not component.group_gone():
            if time.monotonic() > deadline:
                raise StackError(f"{name} (group {pid}) still alive 15 s after SIGKILL")
            time.sleep(0.1)
        component.forget()
        log.info("%s (pid %s) killed", name, pid)
        return pid

    def start_component(self, name: str) -> None:
        """Start component ``name`` again (after :meth:`kill`), with the stack's environment."""
        assert self._env is not None, "the stack is not started"
        self.components[name].start(self._env)

    def restart_redis(self) -> None:
        """Stop Redis (SIGTERM: it writes its append-only file) and start it again on the same port."""
        self.redis.stop()
        self.redis.start()

    def processes(self) -> dict[str, int]:
        """name -> pid of every service and component running now."""
        found = {name: c.pid for name, c in self.components.items() if c.running() and c.pid}
        for service in (self.postgres, self.redis):
            if service.pid:
                found[service.name] = service.pid
        return {name: pid for name, pid in found.items() if pid}

    def stop(self, *, timeout: float = 30.0) -> None:
        """Stop the Airflow components (all at once), then Redis, then Postgres."""
        stop_components(list(self.components.values()), timeout=timeout)
        self.components = {}
        self.redis.stop(timeout=timeout)
        self.postgres.stop(timeout=timeout)
        log.info("Celery stack stopped")
