"""The local AWS endpoint as a child process: ``python -m include.local_aws --port 0`` from this venv."""

from __future__ import annotations

import logging
import os
import selectors
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from include.airflow_standalone import stop_process_group
from include.demo import PROJECT_ROOT

log = logging.getLogger(__name__)


class LocalEndpointError(RuntimeError):
    """The local AWS endpoint did not start; the message carries its output."""


class LocalEndpointProcess:
    """Start ``python -m include.local_aws`` in its own process group and read the URL it prints.

    Batch jobs run as host processes of the endpoint and inherit its PATH, so this interpreter's ``bin``
    (where ``csv-importer`` is installed) goes first on it.

    :param log_path: the endpoint's stderr (its log) goes here.
    :param extra_env: more environment for the endpoint and so for every job process.
    """

    def __init__(
        self, *, log_path: Path, extra_env: dict[str, str] | None = None, host: str = "127.0.0.1"
    ) -> None:
        self.log_path = log_path
        self.extra_env = dict(extra_env or {})
        self.host = host
        self.url = ""
        self._process: subprocess.Popen[str] | None = None
        self._log_file: IO[Any] | None = None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def start(self, *, timeout: float = 60.0) -> str:
        env = dict(os.environ)
        env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
        env.update(self.extra_env)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log_file = self.log_path.open("a")
        self._process = subprocess.Popen(
            [sys.executable, "-m", "include.local_aws", "--host", self.host, "--port", "0"],
            cwd=PROJECT_ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=self._log_file,
            stdin=subprocess.DEVNULL,
            text=True,
            start_new_session=True,
        )
        try:
            self.url = self._read_url(timeout)
        except BaseException:
            self.stop()
            raise
        log.info("Local AWS endpoint (pid %s) serving on %s", self._process.pid, self.url)
        return self.url

    def _read_url(self, timeout: float) -> str:
        if self._process is None or self._process.stdout is None:
            raise LocalEndpointError("the local AWS endpoint was not started")
        selector = selectors.DefaultSelector()
        selector.register(self._process.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if selector.select(timeout=0.5):
                line = self._process.stdout.readline().strip()
                if line.startswith("http"):
                    return line
            if self._process.poll() is not None:
                break
        raise LocalEndpointError(
            f"the local AWS endpoint printed no URL within {timeout:.0f} s "
            f"(exit code {self._process.poll()}); see {self.log_path}"
        )

    def stop(self, *, timeout: float = 20.0) -> None:
        """SIGTERM (the endpoint then ends its job processes), SIGKILL the group if it lingers."""
        process, self._process = self._process, None
        if process is not None:
            stop_process_group(process, timeout=timeout)
            if process.stdout is not None:
                process.stdout.close()
            log.info("Local AWS endpoint (pid %s) stopped", process.pid)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def __enter__(self) -> LocalEndpointProcess:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
