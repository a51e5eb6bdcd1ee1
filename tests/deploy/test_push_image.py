"""``make push-image`` / ``python -m include.deploy.push_image``: ECR for real on the local endpoint, docker recorded.

No Docker engine runs here, so a recording ``docker`` (a small script first on PATH) stands in for the client:
it writes each call's arguments, the stdin of ``--password-stdin`` and its environment to a file, and the tests
assert the exact ``docker login`` / ``build`` / ``push`` command lines. ECR (repository, authorization token,
images) is the local endpoint's, through the script's own boto3 client. One test runs the machine's real
``docker`` client, whose daemon does not answer here.
"""

from __future__ import annotations

import base64
import json
import os
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest

from include.deploy.push_image import IMAGE_PLATFORM, repository_from_image
from include.local_aws import LocalAws
from tests.fixtures.make import run_make

PROJECT_ROOT = Path(__file__).resolve().parents[2]
JOB_CONTEXT = str(PROJECT_ROOT / "include" / "job")
DEFAULT_REPOSITORY = "csv-importer"  # the name part of pipeline.toml's batch.image
DEPLOY_REGION = "eu-west-1"  # differs from the endpoint fixture's us-east-1: the config's region must win

pytestmark = pytest.mark.slow

RECORDER = """#!{python}
# A stand-in docker client: records each call as one JSON line; fails the subcommand named by DOCKER_FAIL_ON.
import json, os, sys
argv = sys.argv[1:]
stdin = sys.stdin.read() if "--password-stdin" in argv else None
with open(os.environ["DOCKER_RECORDING"], "a", encoding="utf-8") as out:
    out.write(json.dumps({{"argv": argv, "stdin": stdin, "env": dict(os.environ)}}) + "\\n")
if argv[:1] == [os.environ.get("DOCKER_FAIL_ON")]:
    # a client that echoes what it was given, the password included: push-image must not repeat it
    print(f"recorded docker: {{argv[0]}} refused (given {{stdin!r}})", file=sys.stderr)
    sys.exit(1)
if argv[:1] == ["version"]:
    print("0.0-recorded")
"""


@dataclass
class RecordingDocker:
    recording: Path

    def calls(self) -> list[dict[str, Any]]:
        if not self.recording.exists():
            return []
        return [json.loads(line) for line in self.recording.read_text(encoding="utf-8").splitlines()]

    def forget(self) -> None:
        self.recording.unlink(missing_ok=True)


@pytest.fixture
def deploy_env(local_aws: LocalAws, monkeypatch: pytest.MonkeyPatch) -> LocalAws:
    """The endpoint fixture's environment, the pipeline config's defaults, and the deploy region."""
    for name in list(os.environ):
        if name.startswith("CSV_IMPORT") or name.startswith("DOCKER_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("CSV_IMPORT__AWS__REGION", DEPLOY_REGION)
    return local_aws


@pytest.fixture
def docker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, deploy_env: LocalAws) -> RecordingDocker:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    client = bin_dir / "docker"
    client.write_text(RECORDER.format(python=sys.executable), encoding="utf-8")
    client.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("DOCKER_RECORDING", str(tmp_path / "docker-calls.jsonl"))
    return RecordingDocker(tmp_path / "docker-calls.jsonl")


@pytest.fixture
def ecr() -> Any:
    """The test's own ECR client on the local endpoint (AWS_ENDPOINT_URL from the endpoint fixture)."""
    return boto3.client("ecr", region_name=DEPLOY_REGION)


def push_image(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "include.deploy.push_image", *args],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def registry_password(ecr: Any) -> str:
    token = ecr.get_authorization_token()["authorizationData"][0]["authorizationToken"]
    return base64.b64decode(token).decode().partition(":")[2]


def expected_argv(uri: str, tag: str) -> list[list[str]]:
    image = f"{uri}:{tag}"
    return [
        ["version", "--format", "{{.Server.Version}}"],
        ["login", "--username", "AWS", "--password-stdin", uri.partition("/")[0]],
        ["build", "--platform", IMAGE_PLATFORM, "-t", image, JOB_CONTEXT],
        ["push", image],
    ]


def assert_pushed(run: subprocess.CompletedProcess[str], docker: RecordingDocker, uri: str, tag: str) -> None:
    assert run.returncode == 0, run.stdout + run.stderr
    assert [call["argv"] for call in docker.calls()] == expected_argv(uri, tag)
    assert run.stdout.splitlines()[-1] == f"CSV_IMPORT__BATCH__IMAGE={uri}:{tag}"
    assert f"Pushed {uri}:{tag}" in run.stdout


def test_pushes_to_a_new_immutable_scanned_repository_password_on_stdin_only(
    docker: RecordingDocker, ecr: Any
) -> None:
    run = push_image("--tag", "v1")

    (repository,) = ecr.describe_repositories()["repositories"]
    assert repository["repositoryName"] == DEFAULT_REPOSITORY
    assert repository["imageTagMutability"] == "IMMUTABLE"
    assert repository["imageScanningConfiguration"] == {"scanOnPush": True}
    assert_pushed(run, docker, repository["repositoryUri"], "v1")
    assert "Created ECR repository" in run.stderr

    password = registry_password(ecr)
    login, *others = (call for call in docker.calls() if call["argv"][0] != "version")
    assert login["stdin"] == password
    assert [call["stdin"] for call in others] == [None, None]
    assert [call for call in docker.calls() if password in json.dumps([call["argv"], call["env"]])] == []
    assert password not in run.stdout + run.stderr


def test_a_second_run_reuses_the_repository(docker: RecordingDocker, ecr: Any) -> None:
    first = push_image("--tag", "v1")
    assert first.returncode == 0, first.stderr
    (created,) = ecr.describe_repositories()["repositories"]
    docker.forget()

    second = push_image("--tag", "v2")

    assert ecr.describe_repositories()["repositories"] == [created]
    assert_pushed(second, docker, created["repositoryUri"], "v2")
    assert "Reusing ECR repository" in second.stderr


def test_an_existing_repository_named_by_the_configured_image_is_used_as_it_is(
    docker: RecordingDocker, ecr: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    theirs = ecr.create_repository(repositoryName="team/csv-importer", imageTagMutability="MUTABLE")
    uri = theirs["repository"]["repositoryUri"]
    monkeypatch.setenv("CSV_IMPORT__BATCH__IMAGE", f"{uri}:v0")  # as after an earlier deployment

    run = push_image("--tag", "v1")

    assert_pushed(run, docker, uri, "v1")
    (repository,) = ecr.describe_repositories()["repositories"]
    assert repository["imageTagMutability"] == "MUTABLE"
    assert repository["imageScanningConfiguration"] == {"scanOnPush": False}


def test_a_tag_already_in_the_immutable_repository_is_refused_before_building(
    docker: RecordingDocker, ecr: Any
) -> None:
    assert push_image("--tag", "v1").returncode == 0
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json"}
    ecr.put_image(repositoryName=DEFAULT_REPOSITORY, imageManifest=json.dumps(manifest), imageTag="v1")
    docker.forget()

    run = push_image("--tag", "v1")

    assert run.returncode == 1
    assert "tag 'v1' already exists" in run.stderr
    assert "the repository's tags are immutable" in run.stderr
    assert [call["argv"][0] for call in docker.calls()] == ["version"]
    assert "Traceback" not in run.stderr


@pytest.mark.parametrize("failing", ["login", "push"])
def test_a_failing_docker_step_is_named_without_the_password(
    docker: RecordingDocker, ecr: Any, monkeypatch: pytest.MonkeyPatch, failing: str
) -> None:
    monkeypatch.setenv("DOCKER_FAIL_ON", failing)

    run = push_image("--tag", "v1")

    assert run.returncode == 1
    (repository,) = ecr.describe_repositories()["repositories"]
    step = {"login": 1, "push": 3}[failing]
    command = shlex.join(["docker", *expected_argv(repository["repositoryUri"], "v1")[step]])
    assert f"push-image: error: `{command}` failed (exit status 1" in run.stderr
    assert docker.calls()[-1]["argv"][0] == failing
    assert registry_password(ecr) not in run.stdout + run.stderr
    assert "CSV_IMPORT__BATCH__IMAGE=" not in run.stdout
    assert "Traceback" not in run.stderr


def test_without_docker_it_stops_before_any_aws_call(
    deploy_env: LocalAws, ecr: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # nothing named docker here

    run = push_image("--tag", "v1")

    assert run.returncode == 1
    assert "push-image: error: `docker` is not on PATH" in run.stderr
    assert "Traceback" not in run.stderr
    assert ecr.describe_repositories()["repositories"] == []


def test_the_real_docker_client_without_a_daemon_gets_a_clear_message(deploy_env: LocalAws, ecr: Any) -> None:
    if shutil.which("docker") is None:
        pytest.skip("no docker client on this machine")
    if subprocess.run(["docker", "version"], capture_output=True, timeout=60).returncode == 0:
        pytest.skip("a Docker daemon answers here; this test is about a machine without one")

    run = push_image("--tag", "v1")

    assert run.returncode == 1
    assert "push-image: error: `docker version` exited with" in run.stderr
    assert "the Docker daemon does not answer" in run.stderr
    assert "Traceback" not in run.stderr
    assert ecr.describe_repositories()["repositories"] == []


def test_make_push_image_runs_the_same(docker: RecordingDocker, ecr: Any) -> None:
    run = run_make("push-image", "TAG=v1")

    (repository,) = ecr.describe_repositories()["repositories"]
    assert_pushed(run, docker, repository["repositoryUri"], "v1")


def test_make_push_image_without_a_tag_says_how_to_call_it() -> None:
    run = run_make("push-image")

    assert run.returncode != 0
    assert "usage: make push-image TAG=<tag>" in run.stderr


@pytest.mark.parametrize(
    ("image", "repository"),
    [
        ("csv-importer:latest", "csv-importer"),
        ("csv-importer", "csv-importer"),
        ("team/csv-importer:v1", "team/csv-importer"),
        ("registry.example.com/team/csv-importer:v1", "team/csv-importer"),
        ("localhost:5000/csv-importer", "csv-importer"),
        ("localhost/csv-importer@sha256:" + "0" * 64, "csv-importer"),
    ],
)
def test_the_default_repository_is_the_configured_image_name(image: str, repository: str) -> None:
    assert repository_from_image(image) == repository
