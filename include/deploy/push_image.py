"""``python -m include.deploy.push_image --tag v1`` (``make push-image TAG=v1``): the job image into ECR.

1. ``docker`` must be on PATH and its daemon must answer (``docker version``), checked before any AWS call;
2. the ECR repository is created, or reused when it exists (``RepositoryAlreadyExistsException``). A new
   repository gets immutable tags, so a tag (and the job definition naming it) always means the same image and
   a re-run can never swap the code under a running pipeline, and scan on push (ECR's basic vulnerability scan
   of every pushed image, at no extra cost). An existing repository is used as it is;
3. a tag already present in an immutable repository is refused before anything is built;
4. ``docker login`` to the repository's registry with an ECR authorization token (the password goes on stdin,
   never on a command line or in a log), ``docker build --platform linux/amd64 -t <uri>:<tag> include/job``
   (the job definition sets no runtime platform, so Batch runs the image on x86_64, whatever machine builds it),
   ``docker push <uri>:<tag>``;
5. prints the image URI and the ``CSV_IMPORT__BATCH__IMAGE=<uri>:<tag>`` line to set where Airflow runs.

The region is the pipeline config's ``aws.region`` and the repository the name part of its ``batch.image``
(``csv-importer:latest`` -> ``csv-importer``) unless given. boto3 finds credentials and endpoint as it always
does (``AWS_PROFILE``, ``AWS_ENDPOINT_URL``, ...). The registry comes from the repository's URI as ECR reports
it; no account id is composed here. Exit status 0 when pushed, 1 when a step failed (the message names it and
says why), 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import base64
import logging
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from batch_import.config import ConfigError, load_config
from include.deploy import PROJECT_ROOT

log = logging.getLogger("include.deploy.push_image")

JOB_BUILD_CONTEXT = PROJECT_ROOT / "include" / "job"
IMAGE_PLATFORM = "linux/amd64"
IMAGE_VARIABLE = "CSV_IMPORT__BATCH__IMAGE"
TAG_PATTERN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")  # Docker's rule for a tag


class DeployError(RuntimeError):
    """A step failed; the message names the step (command or AWS action) and the reason."""


@dataclass(frozen=True)
class Repository:
    name: str
    uri: str
    immutable: bool

    @property
    def registry(self) -> str:
        """The registry host, as ECR reports it in the repository URI."""
        return self.uri.partition("/")[0]


def repository_from_image(image: str) -> str:
    """The repository part of an image reference, without registry, tag or digest.

    ``csv-importer:latest`` -> ``csv-importer``; ``<registry>/team/csv-importer:v1`` -> ``team/csv-importer``
    (a first component with a dot or a colon, or ``localhost``, is a registry, as Docker decides).
    """
    name = image.partition("@")[0]
    if ":" in name.rpartition("/")[2]:
        name = name.rpartition(":")[0]
    first, slash, rest = name.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        return rest
    return name


def _tag(value: str) -> str:
    if not TAG_PATTERN.fullmatch(value):
        raise argparse.ArgumentTypeError(
            f"{value!r} is not a Docker tag (letters, digits, '_', '.', '-'; at most 128; not starting with '.' or '-')"
        )
    return value


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m include.deploy.push_image",
        description="Build the job image (include/job) and push it to ECR; print the CSV_IMPORT__BATCH__IMAGE line.",
    )
    parser.add_argument("--tag", type=_tag, required=True, help="image tag, e.g. v1 or a git commit")
    parser.add_argument(
        "--repository", help="ECR repository name (default: the name part of the config's batch.image)"
    )
    parser.add_argument("--region", help="AWS region (default: the config's aws.region)")
    return parser.parse_args(argv)


def _aws_error(action: str, err: ClientError) -> DeployError:
    error = err.response.get("Error", {})
    return DeployError(f"ECR {action}: {error.get('Code', 'error')}: {error.get('Message', err)}")


def _reason(result: subprocess.CompletedProcess[str], secret: str = "") -> str:
    """The last line a failed command wrote (stderr first), never containing ``secret``."""
    for text in (result.stderr, result.stdout):
        lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
        if lines:
            return lines[-1].replace(secret, "***") if secret else lines[-1]
    return "it wrote nothing"


def _run(argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    log.info("Running: %s", shlex.join(argv))
    try:
        return subprocess.run(argv, text=True, check=False, **kwargs)
    except OSError as err:
        raise DeployError(f"`{shlex.join(argv[:2])}` could not be started: {err}") from err


def check_docker() -> str:
    """The ``docker`` client's path, once its daemon has answered."""
    docker = shutil.which("docker")
    if docker is None:
        raise DeployError(
            "`docker` is not on PATH: install Docker (client and engine) to build and push the job image"
        )
    answer = _run([docker, "version", "--format", "{{.Server.Version}}"], capture_output=True)
    if answer.returncode != 0:
        raise DeployError(
            f"`docker version` exited with {answer.returncode}: the Docker daemon does not answer "
            f"({_reason(answer)!r}); start the Docker engine (or point DOCKER_HOST at one) and run again"
        )
    log.info("Docker daemon %s answers", answer.stdout.strip())
    return docker


def ensure_repository(ecr: Any, name: str) -> Repository:
    """Create the repository (immutable tags, scan on push), or reuse the one that exists."""
    try:
        found = ecr.create_repository(
            repositoryName=name,
            imageTagMutability="IMMUTABLE",
            imageScanningConfiguration={"scanOnPush": True},
        )["repository"]
        log.info("Created ECR repository %s (immutable tags, scan on push)", found["repositoryUri"])
    except ClientError as err:
        if err.response.get("Error", {}).get("Code") != "RepositoryAlreadyExistsException":
            raise _aws_error(f"CreateRepository {name!r}", err) from err
        try:
            (found,) = ecr.describe_repositories(repositoryNames=[name])["repositories"]
        except ClientError as described:
            raise _aws_error(f"DescribeRepositories {name!r}", described) from described
        log.info(
            "Reusing ECR repository %s (tags %s)", found["repositoryUri"], found.get("imageTagMutability")
        )
    return Repository(
        name=found["repositoryName"],
        uri=found["repositoryUri"],
        immutable=found.get("imageTagMutability") == "IMMUTABLE",
    )


def check_tag_is_free(ecr: Any, repository: Repository, tag: str) -> None:
    """Refuse a tag an immutable repository already holds (the push would fail after the build)."""
    try:
        ecr.describe_images(repositoryName=repository.name, imageIds=[{"imageTag": tag}])
    except ClientError as err:
        if err.response.get("Error", {}).get("Code") == "ImageNotFoundException":
            return
        raise _aws_error(f"DescribeImages {repository.name}:{tag}", err) from err
    if repository.immutable:
        raise DeployError(
            f"tag {tag!r} already exists in {repository.uri} and the repository's tags are immutable: "
            "push under a new tag (a version or a git commit)"
        )
    log.warning("Tag %s already exists in %s (mutable tags): the push moves it", tag, repository.uri)


def registry_credentials(ecr: Any) -> tuple[str, str]:
    """(username, password) of an ECR authorization token for the caller's registry."""
    try:
        data = ecr.get_authorization_token()["authorizationData"][0]
    except ClientError as err:
        raise _aws_error("GetAuthorizationToken", err) from err
    username, colon, password = base64.b64decode(data["authorizationToken"]).decode().partition(":")
    if not colon or not password:
        raise DeployError("ECR GetAuthorizationToken: the token is not 'user:password'")
    return username, password


def push_image(ecr: Any, *, repository_name: str, tag: str) -> str:
    """Build the job image and push it as ``<repository uri>:<tag>``; returns that image URI."""
    docker = check_docker()
    repository = ensure_repository(ecr, repository_name)
    check_tag_is_free(ecr, repository, tag)
    image = f"{repository.uri}:{tag}"

    username, password = registry_credentials(ecr)
    login = [docker, "login", "--username", username, "--password-stdin", repository.registry]
    logged_in = _run(login, input=password, capture_output=True)
    if logged_in.returncode != 0:
        raise DeployError(
            f"`docker {shlex.join(login[1:])}` failed (exit status {logged_in.returncode}): "
            f"{_reason(logged_in, secret=password)}"
        )
    log.info("Logged in to %s", repository.registry)

    for step in (
        ["build", "--platform", IMAGE_PLATFORM, "-t", image, str(JOB_BUILD_CONTEXT)],
        ["push", image],
    ):
        done = _run([docker, *step])
        if done.returncode != 0:
            raise DeployError(
                f"`docker {shlex.join(step)}` failed (exit status {done.returncode}; its output is above)"
            )
    return image


def main(argv: list[str] | None = None) -> int:
    args = parse_arguments(argv)
    logging.basicConfig(level=logging.WARNING, format="push-image: %(message)s", stream=sys.stderr)
    log.setLevel(logging.INFO)  # this script's steps; botocore's own chatter stays at WARNING
    try:
        config = load_config()
        region = args.region or config.aws.region
        repository_name = args.repository or repository_from_image(config.batch.image)
        image = push_image(
            boto3.client("ecr", region_name=region), repository_name=repository_name, tag=args.tag
        )
    except (DeployError, ConfigError) as err:
        print(f"push-image: error: {err}", file=sys.stderr)
        return 1
    except BotoCoreError as err:  # no credentials, endpoint unreachable, ...
        print(f"push-image: error: AWS: {err}", file=sys.stderr)
        return 1
    print(f"Pushed {image}")
    print(
        "Set this where Airflow runs (scheduler, DAG processor, workers), "
        "then run the provision_batch_environment DAG:"
    )
    print(f"{IMAGE_VARIABLE}={image}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
