"""Building blocks for the local endpoint's tests: clients, a compute environment + queue, tiny jobs, waiting."""

from __future__ import annotations

import time
import uuid
from typing import Any, Protocol

import boto3
import psutil

REGION = "us-east-1"
TERMINAL = ("SUCCEEDED", "FAILED")

# Prints its own pid and a child's, then sleeps until killed: for checking that no process is left behind.
SLEEP_WITH_CHILD = """
import subprocess, os, time
child = subprocess.Popen(["sleep", "120"])
print(f"PIDS {os.getpid()} {child.pid}", flush=True)
time.sleep(120)
"""


class Endpoint(Protocol):
    """A running local endpoint: ``LocalAws`` in this process, or one served by ``python -m include.local_aws``."""

    @property
    def url(self) -> str: ...


def client(aws: Endpoint, service: str) -> Any:
    return boto3.client(
        service,
        endpoint_url=aws.url,
        region_name=REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def create_queue(aws: Endpoint, *, max_vcpus: int = 64) -> tuple[str, str]:
    """A FARGATE compute environment (default VPC's subnets and security group) and a queue on it."""
    ec2, batch = client(aws, "ec2"), client(aws, "batch")
    subnets = [subnet["SubnetId"] for subnet in ec2.describe_subnets()["Subnets"]]
    groups = [group["GroupId"] for group in ec2.describe_security_groups()["SecurityGroups"]]
    environment = unique("local-ce")
    batch.create_compute_environment(
        computeEnvironmentName=environment,
        type="MANAGED",
        state="ENABLED",
        computeResources={
            "type": "FARGATE",
            "maxvCpus": max_vcpus,
            "subnets": subnets,
            "securityGroupIds": groups,
        },
    )
    queue = unique("local-queue")
    batch.create_job_queue(
        jobQueueName=queue,
        state="ENABLED",
        priority=1,
        computeEnvironmentOrder=[{"order": 1, "computeEnvironment": environment}],
    )
    return environment, queue


def register_python_job(aws: Endpoint, code: str, *, vcpus: str = "0.25", **definition: Any) -> str:
    """A Fargate-style job definition whose command is ``python -c <code>``; returns its name."""
    name = unique("local-job")
    container: dict[str, Any] = {
        "image": "not-used-in-process-mode",
        "command": ["python", "-c", code],
        "resourceRequirements": [{"type": "VCPU", "value": vcpus}, {"type": "MEMORY", "value": "512"}],
    }
    container.update(definition.pop("containerProperties", {}))
    client(aws, "batch").register_job_definition(
        jobDefinitionName=name,
        type="container",
        platformCapabilities=["FARGATE"],
        containerProperties=container,
        **definition,
    )
    return name


def describe(aws: Endpoint, job_id: str) -> dict[str, Any]:
    return client(aws, "batch").describe_jobs(jobs=[job_id])["jobs"][0]  # type: ignore[no-any-return]


def wait_for_status(
    aws: Endpoint, job_id: str, statuses: tuple[str, ...] = TERMINAL, timeout: float = 30
) -> dict[str, Any]:
    """Poll DescribeJobs until the job is in one of ``statuses``; fail naming the last status otherwise."""
    deadline = time.monotonic() + timeout
    job = describe(aws, job_id)
    while job["status"] not in statuses:
        assert time.monotonic() < deadline, f"job {job_id} still {job['status']}, expected one of {statuses}"
        time.sleep(0.05)
        job = describe(aws, job_id)
    return job


def log_messages(aws: Endpoint, log_stream_name: str) -> list[str]:
    events = client(aws, "logs").get_log_events(logGroupName="/aws/batch/job", logStreamName=log_stream_name)
    return [event["message"] for event in events["events"]]


def wait_for_log_line(aws: Endpoint, job_id: str, prefix: str, timeout: float = 30) -> str:
    """The first line starting with ``prefix`` in the job's current log stream, once it is there."""
    deadline = time.monotonic() + timeout
    while True:
        stream = describe(aws, job_id).get("container", {}).get("logStreamName")
        lines = [line for line in log_messages(aws, stream) if line.startswith(prefix)] if stream else []
        if lines:
            return lines[0]
        assert time.monotonic() < deadline, f"job {job_id} logged no line starting with {prefix!r}"
        time.sleep(0.05)


def process_alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def wait_until_gone(pids: list[int], timeout: float = 10) -> list[int]:
    """Pids still alive after ``timeout`` (empty when all ended)."""
    deadline = time.monotonic() + timeout
    alive = [pid for pid in pids if process_alive(pid)]
    while alive and time.monotonic() < deadline:
        time.sleep(0.05)
        alive = [pid for pid in alive if process_alive(pid)]
    return alive
