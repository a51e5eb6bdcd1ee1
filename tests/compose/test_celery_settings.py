"""One source for the production engine's settings: include/config/airflow_celery.toml.

docker-compose.yaml (with the defaults a user gets, and with overrides) and the process stack of
``make demo EXECUTOR=celery`` (:class:`include.celery_stack.stack.CeleryStack`, its environment built without
starting anything) must both say exactly what the file says, each with its own addresses filled in.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import pytest

from include.airflow_standalone import local_aws_connection
from include.celery_stack.settings import StackAddresses, airflow_settings, database_login
from include.celery_stack.stack import CeleryStack
from tests.compose.test_docker_compose import AIRFLOW_SERVICES, _environment, load_compose

# Where compose's services listen, as the settings file's {postgres}, {redis} and {api_server}.
COMPOSE_ADDRESSES = StackAddresses(
    postgres="postgres", redis="redis:6379", api_server="airflow-apiserver:8080"
)
SHARED_KEYS = (
    "AIRFLOW__CORE__EXECUTOR",
    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN",
    "AIRFLOW__CELERY__RESULT_BACKEND",
    "AIRFLOW__CELERY__BROKER_URL",
    "AIRFLOW__CORE__EXECUTION_API_SERVER_URL",
    "AIRFLOW__API_AUTH__JWT_SECRET",
    "AIRFLOW__API__SECRET_KEY",
    "AIRFLOW__CORE__FERNET_KEY",
    "AIRFLOW__CORE__PARALLELISM",
    "AIRFLOW__CELERY__WORKER_CONCURRENCY",
)


def test_the_settings_file_names_every_shared_setting() -> None:
    settings = airflow_settings(COMPOSE_ADDRESSES)
    assert set(settings) == set(SHARED_KEYS)
    assert settings["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert all(settings.values()), "a shared setting is empty"
    from cryptography.fernet import Fernet

    Fernet(settings["AIRFLOW__CORE__FERNET_KEY"].encode())  # a valid key, or connections cannot be stored


@pytest.mark.parametrize("name", AIRFLOW_SERVICES)
def test_docker_compose_says_what_the_settings_file_says(name: str) -> None:
    env = _environment(load_compose()["services"][name])
    expected = airflow_settings(COMPOSE_ADDRESSES)
    assert {key: env.get(key) for key in expected} == expected


def test_compose_addresses_are_its_services_and_ports() -> None:
    compose = load_compose()
    services = compose["services"]
    assert COMPOSE_ADDRESSES.postgres in services
    redis_host, redis_port = COMPOSE_ADDRESSES.redis.split(":")
    assert redis_host in services
    assert redis_port in [str(port) for port in services["redis"]["expose"]]
    api_host, api_port = COMPOSE_ADDRESSES.api_server.split(":")
    assert api_host in services
    assert services[api_host]["ports"][0].endswith(f":{api_port}")
    login = database_login()
    postgres = _environment(services["postgres"])
    assert (postgres["POSTGRES_USER"], postgres["POSTGRES_PASSWORD"], postgres["POSTGRES_DB"]) == (
        login.user,
        login.password,
        login.name,
    )


def test_compose_secrets_can_be_overridden_and_reach_every_airflow_service() -> None:
    overrides = {
        "AIRFLOW_JWT_SECRET": "jwt-from-env",
        "AIRFLOW_API_SECRET_KEY": "api-key-from-env",
        "AIRFLOW_FERNET_KEY": "fernet-from-env",
    }
    services = load_compose(overrides)["services"]
    for name in AIRFLOW_SERVICES:
        env = _environment(services[name])
        assert env["AIRFLOW__API_AUTH__JWT_SECRET"] == "jwt-from-env", name
        assert env["AIRFLOW__API__SECRET_KEY"] == "api-key-from-env", name
        assert env["AIRFLOW__CORE__FERNET_KEY"] == "fernet-from-env", name


def test_the_process_stack_says_what_the_settings_file_says(tmp_path: Path) -> None:
    stack = CeleryStack(
        airflow_home=tmp_path / "airflow_home",
        aws_connection=local_aws_connection(endpoint_url="http://127.0.0.1:1", region_name="us-east-1"),
    )
    stack.postgres.port, stack.redis.port, stack.port = 15432, 16379, 18080
    env = stack.environment()
    expected = airflow_settings(
        StackAddresses(postgres="127.0.0.1:15432", redis="127.0.0.1:16379", api_server="127.0.0.1:18080")
    )
    assert {key: env.get(key) for key in expected} == expected
    assert urlsplit(env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"]).port == stack.port
    assert stack.broker_url == "redis://:@127.0.0.1:16379/0"
