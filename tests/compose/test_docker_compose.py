"""docker-compose.yaml, validated by parsing (no Docker engine here).

The file is read with PyYAML (anchors and ``<<`` merges resolved), then ``${VAR:-default}`` is interpolated the
way Docker Compose does it, with an empty environment (the defaults a user gets) or with overrides. Docker
Compose itself (``docker compose config`` or Debian's ``docker-compose``, no engine needed) must accept the file
and resolve it to the same services and environment.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

PROJECT_ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = PROJECT_ROOT / "docker-compose.yaml"

AIRFLOW_SERVICES = (
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-worker",
    "airflow-triggerer",
    "airflow-init",
)
LONG_RUNNING = ("postgres", "redis", "moto") + tuple(s for s in AIRFLOW_SERVICES if s != "airflow-init")
ONE_SHOT = ("airflow-init", "csv-importer-image")

_VARIABLE = re.compile(r"\$(?:\$|\{(?P<braced>[^}]*)\}|(?P<plain>[A-Za-z_][A-Za-z0-9_]*))")


class ComposeInterpolationError(ValueError):
    """A ``${VAR:?message}`` variable is unset, as Compose would refuse it."""


def interpolate(text: str, environ: Mapping[str, str]) -> str:
    """Docker Compose variable substitution: $$, $VAR, ${VAR}, ${VAR:-d}, ${VAR-d}, ${VAR:?e}, ${VAR?e}."""

    def substitute(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        expression = match.group("braced") if match.group("braced") is not None else match.group("plain")
        for operator in (":-", "-", ":?", "?"):
            name, found, argument = expression.partition(operator)
            if found and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
                value = environ.get(name)
                missing = value is None or (operator.startswith(":") and value == "")
                if not missing:
                    return str(value)
                if operator.endswith("?"):
                    raise ComposeInterpolationError(f"variable {name} is required: {argument}")
                return interpolate(argument, environ)
        return environ.get(expression, "")

    return _VARIABLE.sub(substitute, text)


def _interpolate_tree(node: Any, environ: Mapping[str, str]) -> Any:
    if isinstance(node, str):
        return interpolate(node, environ)
    if isinstance(node, list):
        return [_interpolate_tree(item, environ) for item in node]
    if isinstance(node, dict):
        return {key: _interpolate_tree(value, environ) for key, value in node.items()}
    return node


def load_compose(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    raw = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    return _interpolate_tree(raw, environ or {})


def _environment(service: Mapping[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {key: str(value) for key, value in env.items()}


def _mounts(service: Mapping[str, Any]) -> dict[str, str]:
    """container path -> source, for short-syntax volumes."""
    mounts = {}
    for volume in service.get("volumes", []):
        source, target = volume.split(":")[:2]
        mounts[target] = source
    return mounts


def _requirement_pin(name: str) -> str:
    """The exact pin of ``name`` in requirements.txt (runtime) or requirements-dev.txt (tests: moto)."""
    for file_name in ("requirements.txt", "requirements-dev.txt"):
        for line in (PROJECT_ROOT / file_name).read_text().splitlines():
            package, _, version = line.partition("==")
            package = package.split("[")[0].strip().lower()
            if package in (name, name.replace("-", "_")) and version:
                return version.strip()
    raise AssertionError(f"neither requirements.txt nor requirements-dev.txt pins {name}")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load_compose()


def test_interpolation_follows_compose_rules() -> None:
    env = {"SET": "x", "EMPTY": ""}
    assert (
        interpolate("${SET:-d} ${EMPTY:-d} ${EMPTY-d} ${UNSET-d} ${UNSET} $$HOSTNAME $SET", env)
        == "x d  d  $HOSTNAME x"
    )
    with pytest.raises(ComposeInterpolationError, match="UNSET"):
        interpolate("${UNSET:?set it}", env)


def test_official_airflow_stack_plus_moto_and_job_image(compose: dict[str, Any]) -> None:
    assert set(compose["services"]) == {"postgres", "redis", "moto", "csv-importer-image", *AIRFLOW_SERVICES}
    commands = {name: compose["services"][name].get("command") for name in AIRFLOW_SERVICES[:-1]}
    assert commands == {
        "airflow-apiserver": "api-server",
        "airflow-scheduler": "scheduler",
        "airflow-dag-processor": "dag-processor",
        "airflow-worker": "celery worker",
        "airflow-triggerer": "triggerer",
    }


@pytest.mark.parametrize("name", LONG_RUNNING)
def test_long_running_services_have_healthchecks(compose: dict[str, Any], name: str) -> None:
    check = compose["services"][name].get("healthcheck", {})
    test = check.get("test")
    assert test, f"{name} has no healthcheck"
    assert test[0] in ("CMD", "CMD-SHELL"), f"{name} healthcheck {test!r}"
    assert len(test) > 1, f"{name} healthcheck {test!r} has no command"
    assert "interval" in check, f"{name} healthcheck lacks an interval"
    assert "retries" in check, f"{name} healthcheck lacks retries"


def test_depends_on_waits_for_health_or_completion(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name, service in services.items():
        for dependency, condition in service.get("depends_on", {}).items():
            assert dependency in services, f"{name} depends on unknown service {dependency}"
            expected = "service_completed_successfully" if dependency in ONE_SHOT else "service_healthy"
            assert condition == {"condition": expected}, f"{name} -> {dependency}: {condition}"
            if expected == "service_healthy":
                assert "healthcheck" in services[dependency], (
                    f"{name} waits for {dependency}'s missing healthcheck"
                )
    for name in AIRFLOW_SERVICES:
        assert {"postgres", "redis", "moto"} <= set(services[name]["depends_on"]), name
    assert "airflow-init" in services["airflow-scheduler"]["depends_on"]
    assert "csv-importer-image" in services["airflow-init"]["depends_on"], (
        "Batch jobs need the job image first"
    )


@pytest.mark.parametrize("name", AIRFLOW_SERVICES)
def test_airflow_services_share_the_project_image_and_mounts(compose: dict[str, Any], name: str) -> None:
    service = compose["services"][name]
    build = service["build"]
    assert build["context"] == "."
    dockerfile = PROJECT_ROOT / build["context"] / build["dockerfile"]
    assert dockerfile.is_file(), f"{name} builds from missing {dockerfile}"
    assert build["args"]["AIRFLOW_VERSION"] == _requirement_pin("apache-airflow")
    mounts = _mounts(service)
    for folder in ("dags", "plugins", "include"):
        assert mounts.get(f"/opt/airflow/{folder}") == f"./{folder}", f"{name} does not mount {folder}/"
        assert (PROJECT_ROOT / folder).is_dir()
    # airflow-init runs as root to own the shared volumes, as in the official compose file.
    assert service["user"] == ("0:0" if name == "airflow-init" else "50000:0")


def test_airflow_image_installs_the_project_requirements() -> None:
    dockerfile = (PROJECT_ROOT / "docker" / "airflow" / "Dockerfile").read_text()
    base = re.search(
        r"(?m)^FROM apache/airflow:\$\{AIRFLOW_VERSION\}-python\$\{PYTHON_VERSION\}$", dockerfile
    )
    assert base, "the Airflow image must extend the official apache/airflow image"
    assert f"ARG AIRFLOW_VERSION={_requirement_pin('apache-airflow')}" in dockerfile
    assert re.search(r"(?m)^COPY .*requirements\.txt", dockerfile)
    assert re.search(r"(?m)^COPY .*include/job ", dockerfile), "requirements.txt installs ./include/job"
    assert re.search(r"(?m)^RUN pip install .*-r requirements\.txt", dockerfile)


def test_airflow_environment(compose: dict[str, Any]) -> None:
    env = _environment(compose["services"]["airflow-scheduler"])
    assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert urlsplit(env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]).hostname == "postgres"
    assert urlsplit(env["AIRFLOW__CELERY__BROKER_URL"]).hostname == "redis"
    api = urlsplit(env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"])
    assert api.hostname == "airflow-apiserver"
    assert f":{api.port}" in compose["services"]["airflow-apiserver"]["ports"][0]
    assert env["AIRFLOW__CORE__LOAD_EXAMPLES"] == "false"
    assert env["AIRFLOW__API_AUTH__JWT_SECRET"], "components must share one JWT secret"
    config_file = env["CSV_IMPORT_CONFIG"]
    assert config_file.startswith("/opt/airflow/include/")
    assert (PROJECT_ROOT / "include" / config_file.removeprefix("/opt/airflow/include/")).is_file()
    worker_env = _environment(compose["services"]["airflow-worker"])
    assert worker_env["DUMB_INIT_SETSID"] == "0"
    assert {k: v for k, v in worker_env.items() if k != "DUMB_INIT_SETSID"} == env


def test_aws_default_points_at_moto(compose: dict[str, Any]) -> None:
    from airflow.models.connection import Connection
    from airflow.providers.amazon.aws.utils.connection_wrapper import AwsConnectionWrapper

    uri = _environment(compose["services"]["airflow-worker"])["AIRFLOW_CONN_AWS_DEFAULT"]
    wrapper = AwsConnectionWrapper(Connection(conn_id="aws_default", uri=uri))
    assert wrapper.conn_type == "aws"
    endpoint = urlsplit(wrapper.endpoint_url)
    assert endpoint.hostname == "moto"
    moto = compose["services"]["moto"]
    assert moto["ports"][0].endswith(f":{endpoint.port}")
    assert _environment(moto)["MOTO_PORT"] == str(endpoint.port)
    assert (
        wrapper.region_name == _environment(compose["services"]["airflow-worker"])["CSV_IMPORT__AWS__REGION"]
    )


def test_moto_runs_batch_jobs_as_job_image_containers(compose: dict[str, Any]) -> None:
    moto = compose["services"]["moto"]
    assert moto["image"] == f"motoserver/moto:{_requirement_pin('moto')}"
    assert _mounts(moto).get("/var/run/docker.sock") == "/var/run/docker.sock", "Docker mode needs the socket"
    assert _environment(moto)["MOTO_DOCKER_NETWORK_NAME"] == compose["networks"]["default"]["name"]
    job_image = compose["services"]["csv-importer-image"]
    assert job_image["build"]["context"] == "./include/job"
    assert job_image["build"]["dockerfile"] == "Dockerfile"
    assert (PROJECT_ROOT / "include" / "job").is_dir()
    scheduler_env = _environment(compose["services"]["airflow-scheduler"])
    assert scheduler_env["CSV_IMPORT__BATCH__IMAGE"] == job_image["image"], (
        "job definition must use the built image"
    )


def test_overrides_reach_the_services() -> None:
    compose = load_compose(
        {
            "AIRFLOW_UID": "1234",
            "AIRFLOW_PORT": "18080",
            "CSV_IMPORTER_IMAGE": "registry.example.com/csv-importer:1.2",
            "AWS_REGION": "eu-west-1",
        }
    )
    scheduler = compose["services"]["airflow-scheduler"]
    assert scheduler["user"] == "1234:0"
    assert compose["services"]["airflow-apiserver"]["ports"] == ["18080:8080"]
    assert compose["services"]["csv-importer-image"]["image"] == "registry.example.com/csv-importer:1.2"
    assert _environment(scheduler)["CSV_IMPORT__BATCH__IMAGE"] == "registry.example.com/csv-importer:1.2"
    assert _environment(scheduler)["CSV_IMPORT__AWS__REGION"] == "eu-west-1"


def test_every_variable_has_a_default() -> None:
    text = COMPOSE_FILE.read_text(encoding="utf-8")
    body = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    bare = [
        m.group(0) for m in re.finditer(r"\$\{([^}]*)\}", body.replace("$$", "")) if ":-" not in m.group(1)
    ]
    assert bare == [], f"variables without a default: {bare}"


def test_job_containers_are_told_where_moto_is(compose: dict[str, Any]) -> None:
    """moto's container mode gives jobs only MOTO_HTTP_ENDPOINT: the job definition must carry the endpoint."""
    from batch_import.config import load_config
    from batch_import.provisioning.batch import job_environment_from_config

    scheduler_env = _environment(compose["services"]["airflow-scheduler"])
    config = load_config(environ={k: v for k, v in scheduler_env.items() if k.startswith("CSV_IMPORT__")})
    moto_port = _environment(compose["services"]["moto"])["MOTO_PORT"]
    for feed in config.feeds:
        job_env = job_environment_from_config(config, feed)
        assert job_env["AWS_ENDPOINT_URL"] == f"http://moto:{moto_port}"
        assert job_env["AWS_DEFAULT_REGION"] == config.aws.region
        assert job_env["AWS_ACCESS_KEY_ID"]
        assert job_env["AWS_SECRET_ACCESS_KEY"]
        assert job_env["bucket_name"] == config.bucket.name
        assert job_env["table_name"] == feed.table.name


def _compose_cli() -> list[str] | None:
    """Docker Compose itself, which validates a file without an engine: the ``docker compose`` plugin, else the
    ``docker-compose`` command (Debian's package: ``apt-get install docker-compose``)."""
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0:
        return [docker, "compose"]
    standalone = shutil.which("docker-compose")
    return [standalone] if standalone else None


def _clean_environment(overrides: Mapping[str, str]) -> dict[str, str]:
    """The caller's environment without any variable the compose file reads, plus ``overrides``."""
    read = {
        match.group("braced") or match.group("plain")
        for match in _VARIABLE.finditer(COMPOSE_FILE.read_text())
    }
    names = {re.split(r"[:?+-]", name or "", maxsplit=1)[0] for name in read}
    return {k: v for k, v in os.environ.items() if k not in names and not k.startswith("COMPOSE_")} | dict(
        overrides
    )


@pytest.mark.parametrize("overrides", [{}, {"AWS_REGION": "eu-west-1", "AIRFLOW_PORT": "18080"}])
def test_docker_compose_accepts_the_file_and_resolves_it_as_this_parser_does(
    overrides: dict[str, str],
) -> None:
    """Compose's own validation (schema, interpolation) needs no engine; its resolved model must match ours."""
    cli = _compose_cli()
    if cli is None:
        reason = "neither `docker compose` nor `docker-compose` is installed (Debian: apt-get install docker-compose)"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"CI=true and {reason}")
        pytest.skip(reason)
    run = subprocess.run(
        [*cli, "--file", str(COMPOSE_FILE), "--project-directory", str(PROJECT_ROOT), "config"],
        env=_clean_environment(overrides),
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert run.returncode == 0, run.stderr
    resolved = yaml.safe_load(run.stdout)
    ours = load_compose(overrides)
    assert set(resolved["services"]) == set(ours["services"])
    for name, service in ours["services"].items():
        # `config` prints a literal $ as $$ again (so its output can be read back as a compose file)
        resolved_environment = {
            key: value.replace("$$", "$") for key, value in _environment(resolved["services"][name]).items()
        }
        assert resolved_environment == _environment(service), name
        assert bool(resolved["services"][name].get("healthcheck")) == bool(service.get("healthcheck")), name
    ports = resolved["services"]["airflow-apiserver"]["ports"]
    published = {str(port["published"]) if isinstance(port, dict) else port.split(":")[0] for port in ports}
    assert published == {overrides.get("AIRFLOW_PORT", "8080")}
