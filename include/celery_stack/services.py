"""Postgres and Redis from the OS packages, as child processes with their data under a given folder.

:class:`PostgresServer` makes a throwaway cluster with ``initdb`` (owner and password from the settings file) and
runs ``postgres`` on loopback and a free port, without a Unix socket; ``initdb`` and ``postgres`` refuse to run
as root, so as root both run as the ``postgres`` system user (the Debian package creates it), which then owns
the data folder. :class:`RedisServer` runs ``redis-server`` on loopback and a free port with an append-only file
under the folder, so that a restart keeps what was queued.
"""

from __future__ import annotations

import glob
import logging
import os
import pwd
import shutil
import subprocess
import time
from pathlib import Path
from typing import IO, Any

from include.airflow_standalone import free_port, stop_process_group
from include.celery_stack.settings import DatabaseLogin

log = logging.getLogger(__name__)

OS_PACKAGES_HINT = "install the OS packages: sudo apt-get install postgresql redis-server (Debian / Ubuntu)"
POSTGRES_SYSTEM_USER = "postgres"


class StackError(RuntimeError):
    """A service of the stack is missing, did not start or stopped; the message says which and where its log is."""


def find_postgres_binaries() -> Path:
    """The folder holding ``initdb`` and ``postgres``: from PATH, else Debian's newest /usr/lib/postgresql/N/bin."""
    for name in ("postgres", "initdb"):
        found = shutil.which(name)
        if found and (Path(found).resolve().parent / "postgres").exists():
            return Path(found).resolve().parent
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/postgres"), key=lambda p: int(Path(p).parts[-3].split(".")[0])
    )
    if candidates:
        return Path(candidates[-1]).parent
    raise StackError(f"PostgreSQL (initdb, postgres) not found: {OS_PACKAGES_HINT}")


def find_redis_server() -> str:
    found = shutil.which("redis-server")
    if found is None:
        raise StackError(f"redis-server not found: {OS_PACKAGES_HINT}")
    return found


class _Service:
    """One long-running child process in its own process group, its output in ``log_path``."""

    name = "service"

    def __init__(self, *, folder: Path, host: str = "127.0.0.1") -> None:
        self.folder = folder
        self.host = host
        self.port = 0
        self.log_path = folder / f"{self.name}.log"
        self._process: subprocess.Popen[bytes] | None = None
        self._log_file: IO[Any] | None = None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def _spawn(self, command: list[str], **options: Any) -> None:
        self._log_file = self.log_path.open("ab")
        self._process = subprocess.Popen(
            command,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            **options,
        )

    def raise_if_exited(self) -> None:
        if self._process is not None and self._process.poll() is not None:
            raise StackError(
                f"{self.name} exited with code {self._process.returncode}; see {self.log_path}:\n{self.log_tail()}"
            )

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"

    def stop(self, *, timeout: float = 30.0) -> None:
        process, self._process = self._process, None
        if process is not None:
            stop_process_group(process, timeout=timeout)
            log.info("%s (pid %s) stopped", self.name, process.pid)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None


class PostgresServer(_Service):
    """A throwaway PostgreSQL cluster in ``folder`` with the metadata database of ``login``."""

    name = "postgres"

    def __init__(self, *, folder: Path, login: DatabaseLogin, host: str = "127.0.0.1") -> None:
        super().__init__(folder=folder, host=host)
        self.login = login
        self.binaries = find_postgres_binaries()
        self.data = folder / "data"
        # initdb and postgres refuse root: run them as the package's system user, which must own the folder.
        self._user = POSTGRES_SYSTEM_USER if os.geteuid() == 0 else None

    def start(self, *, timeout: float = 60.0) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        if not self.data.exists():
            self._initdb()
        self.port = self.port or free_port(self.host)
        self._spawn(
            [
                str(self.binaries / "postgres"),
                "-D", str(self.data),
                "-p", str(self.port),
                "-c", f"listen_addresses={self.host}",
                "-c", "unix_socket_directories=",
                "-c", "max_connections=200",
                "-c", "shared_buffers=64MB",
                # A throwaway cluster: no durability needed across a crash of the machine.
                "-c", "fsync=off",
                "-c", "synchronous_commit=off",
                "-c", "full_page_writes=off",
            ],
            **self._as_user(),
        )  # fmt: skip
        self._wait_until_ready(timeout)
        self._create_database()
        log.info("Postgres (pid %s) on %s, data %s", self.pid, self.address, self.data)

    def _as_user(self) -> dict[str, Any]:
        if self._user is None:
            return {}
        return {"user": self._user, "group": pwd.getpwnam(self._user).pw_gid, "extra_groups": []}

    def _initdb(self) -> None:
        password_file = self.folder / "initdb.password"
        password_file.write_text(self.login.password + "\n")
        if self._user is not None:
            self._hand_over(password_file)
        self.log_path.touch()
        if self._user is not None:
            self._hand_over(self.log_path)
        with self.log_path.open("ab") as output:
            result = subprocess.run(
                [
                    str(self.binaries / "initdb"),
                    "-D", str(self.data),
                    "-U", self.login.user,
                    f"--pwfile={password_file}",
                    "--auth=scram-sha-256",
                    "-E", "UTF8",
                    "--no-locale",
                ],
                stdout=output, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, check=False, timeout=120,
                **self._as_user(),
            )  # fmt: skip
        password_file.unlink()
        if result.returncode != 0:
            raise StackError(
                f"initdb failed (exit {result.returncode}); see {self.log_path}:\n{self.log_tail()}"
            )

    def _hand_over(self, path: Path) -> None:
        """Give ``path`` and the folder to the system user, and check that it can reach them."""
        assert self._user is not None
        entry = pwd.getpwnam(self._user)
        for owned in (self.folder, path):
            os.chown(owned, entry.pw_uid, entry.pw_gid)
        for parent in self.folder.resolve().parents:
            mode = parent.stat().st_mode
            if not mode & 0o001 and parent.stat().st_uid != entry.pw_uid:
                raise StackError(
                    f"Postgres runs as the {self._user} user (not as root), which cannot enter {parent}: "
                    "use a working folder whose parent folders are world-traversable (chmod o+x)"
                )

    def _connect(self, dbname: str) -> Any:
        import psycopg2

        return psycopg2.connect(
            host=self.host,
            port=self.port,
            user=self.login.user,
            password=self.login.password,
            dbname=dbname,
            connect_timeout=5,
        )

    def _wait_until_ready(self, timeout: float) -> None:
        import psycopg2

        deadline = time.monotonic() + timeout
        while True:
            self.raise_if_exited()
            try:
                self._connect("postgres").close()
                return
            except psycopg2.OperationalError as err:
                if time.monotonic() > deadline:
                    raise StackError(
                        f"Postgres not accepting connections after {timeout:.0f} s: {err}"
                    ) from err
            time.sleep(0.3)

    def _create_database(self) -> None:
        connection = self._connect("postgres")
        try:
            connection.autocommit = True
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", (self.login.name,))
                if cursor.fetchone() is None:
                    cursor.execute(f'CREATE DATABASE "{self.login.name}"')
        finally:
            connection.close()


class RedisServer(_Service):
    """``redis-server`` with its append-only file in ``folder``; can be stopped and started on the same port."""

    name = "redis"

    def start(self, *, timeout: float = 30.0) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port(self.host)
        self._spawn(
            [
                find_redis_server(),
                "--bind", self.host,
                "--port", str(self.port),
                "--dir", str(self.folder),
                "--daemonize", "no",
                "--save", "",
                "--appendonly", "yes",
                "--logfile", "",
            ]
        )  # fmt: skip
        self._wait_until_ready(timeout)
        log.info("Redis (pid %s) on %s", self.pid, self.address)

    def ping(self) -> bool:
        import redis

        try:
            return bool(redis.Redis(host=self.host, port=self.port, socket_timeout=2).ping())
        except redis.RedisError:
            return False

    def _wait_until_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not self.ping():
            self.raise_if_exited()
            if time.monotonic() > deadline:
                raise StackError(f"Redis not answering PING after {timeout:.0f} s; see {self.log_path}")
            time.sleep(0.2)
