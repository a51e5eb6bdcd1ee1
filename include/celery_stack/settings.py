"""The production engine's Airflow settings, read from ``include/config/airflow_celery.toml``.

The same file describes this machine's process stack (:mod:`include.celery_stack.stack`) and docker-compose.yaml;
:func:`airflow_settings` fills in each stack's addresses.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]
SETTINGS_FILE = PROJECT_ROOT / "include" / "config" / "airflow_celery.toml"


@dataclass(frozen=True)
class DatabaseLogin:
    """The metadata database's owner, password and name (the cluster is created with them)."""

    user: str
    password: str
    name: str


@dataclass(frozen=True)
class StackAddresses:
    """Where each service of a stack listens, as ``host:port`` (or a bare host: the service's default port)."""

    postgres: str
    redis: str
    api_server: str


def _load(path: Path) -> dict[str, dict[str, str]]:
    return tomllib.loads(path.read_text(encoding="utf-8"))


def database_login(path: Path = SETTINGS_FILE) -> DatabaseLogin:
    section = _load(path)["database"]
    return DatabaseLogin(user=section["user"], password=section["password"], name=section["name"])


def airflow_settings(addresses: StackAddresses, path: Path = SETTINGS_FILE) -> dict[str, str]:
    """Every ``AIRFLOW__`` variable of the file, with ``addresses`` and the database login filled in."""
    loaded = _load(path)
    login = database_login(path)
    values = {
        "postgres": addresses.postgres,
        "redis": addresses.redis,
        "api_server": addresses.api_server,
        "db_user": login.user,
        "db_password": login.password,
        "db_name": login.name,
    }
    return {name: str(template).format(**values) for name, template in loaded["environment"].items()}
