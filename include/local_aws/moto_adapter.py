"""The one place that reaches into moto's private Batch internals (moto pinned to 5.2.5 in requirements-dev.txt).

It replaces ``moto.batch.models.Job.run`` (Docker-only) with the host-process runtime, corrects the moto defects
the pipeline would trip over, and exposes a moto job to that runtime through :class:`MotoBatchJob`, a narrow view.
:func:`moto_internals_problems` lists every private name relied on here, so that a moto upgrade that moves one
fails loudly (``tests/local_aws/test_moto_internals.py``, and :func:`install_patches` refuses to start).
"""

from __future__ import annotations

import copy
import functools
import inspect
import json
import logging
import re
import threading
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

import moto
from moto.batch import models as batch_models
from moto.batch import responses as batch_responses
from moto.batch.exceptions import ClientException, InvalidParameterValueException
from moto.iam import models as iam_models
from moto.iam.exceptions import NotFoundException as IAMNotFoundException
from moto.logs import models as logs_models

if TYPE_CHECKING:
    from include.local_aws.job_runtime import ProcessRuntime

log = logging.getLogger(__name__)

PINNED_MOTO_VERSION = "5.2.5"
TERMINAL_STATUSES = frozenset({"SUCCEEDED", "FAILED"})
BATCH_SERVICE_PRINCIPAL = "batch.amazonaws.com"
BATCH_SERVICE_LINKED_ROLE = "AWSServiceRoleForBatch"
JOB_LOG_GROUP = "/aws/batch/job"

Job = batch_models.Job
BatchBackend = batch_models.BatchBackend

# Instance attributes moto's Job.__init__ must still assign (read or written by this module).
_JOB_INSTANCE_ATTRIBUTES = (
    "job_name",
    "job_id",
    "job_definition",
    "container_overrides",
    "job_queue",
    "backend",
    "job_started_at",
    "job_stopped_at",
    "job_stopped",
    "job_stopped_reason",
    "depends_on",
    "parameters",
    "timeout",
    "array_properties",
    "stop",
    "exit_code",
    "_log_backend",
    "log_stream_name",
    "attempts",
    "latest_attempt",
    "_child_jobs",
)
_INSTANCE_ATTRIBUTES: tuple[tuple[Any, tuple[str, ...]], ...] = (
    (batch_models.ComputeEnvironment, ("name", "state", "compute_resources", "arn")),
    (batch_models.JobQueue, ("name", "environments", "arn")),
    (batch_models.JobDefinition, ("name", "container_properties", "retry_strategy", "timeout")),
    (batch_models.BatchBackend, ("_jobs",)),
)
# (owner, attribute, parameters its signature must start with, or None when not callable)
_SIGNATURES: tuple[tuple[Any, str, tuple[str, ...] | None], ...] = (
    (batch_models.Job, "run", ("self",)),
    (batch_models.Job, "describe", ("self",)),
    (batch_models.Job, "describe_short", ("self",)),
    (
        batch_models.BatchBackend,
        "list_jobs",
        ("self", "job_queue_name", "array_job_id", "job_status", "filters"),
    ),
    (batch_models.Job, "_get_container_property", ("self", "p", "default")),
    (batch_models.Job, "terminate", ("self", "reason")),
    (batch_models.Job, "status", None),
    (batch_models.Job, "__init__", ("self", "name", "job_def", "job_queue", "backend")),
    (batch_models.JobDefinition, "_get_resource_requirement", ("self", "req_type", "default")),
    (
        batch_models.BatchBackend,
        "submit_job",
        ("self", "job_name", "job_def_id", "job_queue", "array_properties"),
    ),
    (
        batch_models.BatchBackend,
        "create_compute_environment",
        ("self", "compute_environment_name", "_type", "state", "compute_resources", "service_role"),
    ),
    (
        batch_models.BatchBackend,
        "update_compute_environment",
        ("self", "compute_environment_name", "state", "compute_resources", "service_role"),
    ),
    (
        batch_models.BatchBackend,
        "update_job_queue",
        ("self", "queue_name", "priority", "state", "compute_env_order", "schedule_policy"),
    ),
    (batch_models.BatchBackend, "get_compute_environment", ("self", "identifier")),
    (batch_models.BatchBackend, "get_job_by_id", ("self", "identifier")),
    (batch_models.BatchBackend, "cancel_job", ("self", "job_id", "reason")),
    (batch_models.BatchBackend, "terminate_job", ("self", "job_id", "reason")),
    (batch_models.BatchBackend, "iam_backend", None),
    (batch_responses.BatchResponse, "submitjob", ("self",)),
    (batch_responses.BatchResponse, "batch_backend", None),
    (logs_models.LogsBackend, "ensure_log_group", ("self", "log_group_name")),
    (logs_models.LogsBackend, "ensure_log_stream", ("self", "log_group_name", "log_stream_name")),
    (logs_models.LogsBackend, "put_log_events", ("self", "log_group_name", "log_stream_name", "log_events")),
    (iam_models.IAMBackend, "get_role", ("self", "role_name")),
    (
        iam_models.IAMBackend,
        "create_role",
        ("self", "role_name", "assume_role_policy_document", "path", "permissions_boundary", "description"),
    ),
    (batch_models, "JOB_NAME_REGEX", None),
    (iam_models.IAMBackend, "_init_aws_policies", ("self",)),
    (iam_models.AWSManagedPolicy, "from_data", ("cls", "name", "account_id", "region_name", "data")),
    (iam_models, "aws_managed_policies_data", None),
    (iam_models, "load_iam_aws_managed_policies", None),
)


def moto_internals_problems() -> list[str]:
    """What changed in moto's internals that this adapter relies on; empty when all is as in moto 5.2.5."""
    problems: list[str] = []
    if moto.__version__ != PINNED_MOTO_VERSION:
        problems.append(f"moto is {moto.__version__}, the adapter was written against {PINNED_MOTO_VERSION}")
    for owner, attribute, parameters in _SIGNATURES:
        where = f"{getattr(owner, '__module__', None) or owner.__name__}.{getattr(owner, '__qualname__', '')}"
        where = f"{where.rstrip('.')}.{attribute}"
        member = _ORIGINALS.get(f"{owner.__name__}.{attribute}") or inspect.getattr_static(
            owner, attribute, None
        )
        if member is None:
            problems.append(f"{where} no longer exists")
            continue
        if parameters is None:
            continue
        if isinstance(member, classmethod | staticmethod):
            member = member.__func__
        actual = tuple(inspect.signature(member).parameters)
        if actual[: len(parameters)] != parameters:
            problems.append(f"{where} parameters changed: expected {parameters} first, found {actual}")
    constructors = [(batch_models.Job, _original("Job.__init__"), _JOB_INSTANCE_ATTRIBUTES)]
    constructors += [(owner, owner.__init__, attributes) for owner, attributes in _INSTANCE_ATTRIBUTES]
    for owner, init, attributes in constructors:
        source = inspect.getsource(init)
        for attribute in attributes:
            if f"self.{attribute} =" not in source and f"self.{attribute}:" not in source:
                problems.append(
                    f"{owner.__module__}.{owner.__qualname__}.__init__ no longer assigns self.{attribute}"
                )
    return problems


# --- the view the runtime uses --------------------------------------------------------------------------------


class MotoBatchJob:
    """A moto Batch job seen by the host-process runtime: what to run, and where to record what happened."""

    def __init__(self, job: Any) -> None:
        self._job = job

    @property
    def job_id(self) -> str:
        return str(self._job.job_id)

    @property
    def job_name(self) -> str:
        return str(self._job.job_name)

    @property
    def job_definition_name(self) -> str:
        return str(self._job.job_definition.name)

    @property
    def region_name(self) -> str:
        return str(self._job.backend.region_name)

    @property
    def queue_name(self) -> str:
        return str(self._job.job_queue.name)

    @property
    def status(self) -> str:
        return str(self._job.status)

    @status.setter
    def status(self, value: str) -> None:
        self._job.status = value

    @property
    def stop_requested(self) -> bool:
        return bool(self._job.stop)

    @property
    def stop_reason(self) -> str:
        return str(self._job.job_stopped_reason or "Job terminated")

    def request_stop(self, reason: str) -> None:
        """What TerminateJob does: the runtime notices, stops the process and fails the job with ``reason``."""
        self._job.terminate(reason)

    @property
    def array_index(self) -> int | None:
        index = self._job.array_properties.get("index")
        return None if index is None else int(index)

    def wait_until_submitted(self, timeout: float) -> None:
        """Block until SubmitJob has finished attaching what moto does not keep (the retry strategy)."""
        submitted = getattr(self._job, "_local_submitted", None)
        if submitted is not None:
            submitted.wait(timeout)

    def command(self) -> list[str]:
        """The container command (override wins) with every ``Ref::name`` replaced by the job's parameters."""
        if self._job.job_definition.container_properties is None:
            raise ValueError(
                f"job definition {self._job.job_definition.name} is not a container job definition: multi-node and "
                "EKS jobs cannot run as host processes"
            )
        command = self._job._get_container_property("command", [])
        if isinstance(command, str):
            command = [command]
        parameters: dict[str, str] = dict(self._job.parameters or {})
        names = sorted(parameters, key=len, reverse=True)
        substituted = []
        for part in command:
            for name in names:
                part = part.replace(f"Ref::{name}", str(parameters[name]))
            substituted.append(part)
        return substituted

    def environment(self) -> dict[str, str]:
        """Job definition environment, overridden by containerOverrides, plus AWS_BATCH_JOB_ID."""
        return {item["name"]: str(item["value"]) for item in _job_environment(self._job)}

    def vcpus(self) -> float:
        """vCPUs reserved while the job runs: overrides win, resourceRequirements (Fargate) over ``vcpus``."""
        overrides = self._job.container_overrides or {}
        for requirement in overrides.get("resourceRequirements") or []:
            if requirement.get("type") == "VCPU":
                return float(requirement["value"])
        if overrides.get("vcpus") is not None:
            return float(overrides["vcpus"])
        return float(self._job.job_definition._get_resource_requirement("vcpus", 1) or 1)

    def attempt_duration_seconds(self) -> int | None:
        """``timeout.attemptDurationSeconds``: SubmitJob's wins over the job definition's."""
        for timeout in (self._job.timeout, self._job.job_definition.timeout):
            if timeout and timeout.get("attemptDurationSeconds"):
                return int(timeout["attemptDurationSeconds"])
        return None

    def retry_strategy(self) -> dict[str, Any]:
        """``retryStrategy``: SubmitJob's wins over the job definition's; ``{}`` when neither has one."""
        submitted = getattr(self._job, "_local_retry_strategy", None)
        return dict(submitted or self._job.job_definition.retry_strategy or {})

    def dependencies(self) -> list[str]:
        """Job ids this job waits for; for array children N_TO_N and SEQUENTIAL resolve to sibling children."""
        own_index = self.array_index
        parent_id = self.job_id.rsplit(":", 1)[0]
        waits: list[str] = []
        for dependency in self._job.depends_on or []:
            kind = str(dependency.get("type", "")).upper()
            if kind == "SEQUENTIAL" and own_index is not None:
                if own_index > 0:
                    waits.append(f"{parent_id}:{own_index - 1}")
            elif kind == "N_TO_N" and own_index is not None:
                waits.append(f"{dependency['jobId']}:{own_index}")
            elif dependency.get("jobId"):
                waits.append(str(dependency["jobId"]))
        return waits

    def status_of(self, job_id: str) -> str | None:
        """Status of another job of the same backend, ``None`` when it does not exist."""
        other = self._job.backend.get_job_by_id(job_id)
        return None if other is None else str(other.status)

    def compute_environments(self) -> list[ComputeCapacity]:
        """The queue's compute environments in computeEnvironmentOrder."""
        return [ComputeCapacity(environment) for environment in self._job.job_queue.environments]

    def start_attempt(self, log_stream_name: str, started_at: datetime) -> None:
        """Record a new attempt (as DescribeJobs lists it) and make its log stream the job's current one."""
        job = self._job
        if not job.attempts:
            job.job_started_at = started_at
        job.log_stream_name = log_stream_name
        job.latest_attempt = {
            "container": {
                "containerInstanceArn": "local",
                "taskArn": f"local-process:{uuid.uuid4().hex}",
                "logStreamName": log_stream_name,
                "networkInterfaces": [],
            },
            "startedAt": _epoch_millis(started_at),
        }
        job.attempts.append(job.latest_attempt)
        logs = job._log_backend
        logs.ensure_log_group(JOB_LOG_GROUP)
        logs.ensure_log_stream(JOB_LOG_GROUP, log_stream_name)

    def put_log_events(self, log_stream_name: str, events: list[dict[str, Any]]) -> None:
        self._job._log_backend.put_log_events(JOB_LOG_GROUP, log_stream_name, events)

    def stop_attempt(
        self, *, exit_code: int | None, status_reason: str, container_reason: str | None, stopped_at: datetime
    ) -> None:
        attempt = self._job.latest_attempt
        if attempt is None:
            return
        if exit_code is not None:
            attempt["container"]["exitCode"] = exit_code
        if container_reason:
            attempt["container"]["reason"] = container_reason
        attempt["statusReason"] = status_reason
        attempt["stoppedAt"] = _epoch_millis(stopped_at)

    def finish(self, *, succeeded: bool, status_reason: str, stopped_at: datetime) -> None:
        """Make the job SUCCEEDED or FAILED, carrying the last attempt's exit code and reason."""
        job = self._job
        attempt = job.latest_attempt or {}
        job.exit_code = attempt.get("container", {}).get("exitCode")
        job._local_container_reason = attempt.get("container", {}).get("reason")
        job.job_stopped_reason = status_reason
        job.job_stopped_at = stopped_at
        job.job_stopped = True
        job.status = "SUCCEEDED" if succeeded else "FAILED"
        if self.array_index is not None:
            _settle_array_parent(job)


class ComputeCapacity:
    """A compute environment's name, whether it places jobs, and its vCPU ceiling (None: unlimited)."""

    def __init__(self, environment: Any) -> None:
        self._environment = environment

    @property
    def arn(self) -> str:
        return str(self._environment.arn)

    @property
    def name(self) -> str:
        return str(self._environment.name)

    @property
    def enabled(self) -> bool:
        return (self._environment.state or "ENABLED") == "ENABLED"

    @property
    def max_vcpus(self) -> float | None:
        resources = self._environment.compute_resources or {}
        maximum = resources.get("maxvCpus")
        return None if maximum is None else float(maximum)


# --- moto defect fixes and the Job.run replacement ------------------------------------------------------------

_ORIGINALS: dict[str, Callable[..., Any]] = {}
_INSTALL_LOCK = threading.Lock()
_installed_runtime: ProcessRuntime | None = None


def _original(name: str) -> Callable[..., Any]:
    if name in _ORIGINALS:
        return _ORIGINALS[name]
    owner_name, attribute = name.split(".")
    owner = {"Job": batch_models.Job, "BatchBackend": batch_models.BatchBackend}[owner_name]
    return getattr(owner, attribute)  # type: ignore[no-any-return]


def _epoch_millis(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def _job_environment(job: Any) -> list[dict[str, str]]:
    """moto's merge (override wins) without mutating the overrides on every DescribeJobs call."""
    overrides = job.container_overrides.get("environment") or []
    definition = (job.job_definition.container_properties or {}).get("environment") or []
    merged = {item["name"]: item["value"] for item in definition}
    merged.update({item["name"]: item["value"] for item in overrides})
    merged["AWS_BATCH_JOB_ID"] = job.job_id
    return [{"name": name, "value": value} for name, value in merged.items()]


def _get_container_property(self: Any, p: str, default: Any) -> Any:
    if p == "environment" and self.job_definition.container_properties is not None:
        return _job_environment(self)
    return _original("Job._get_container_property")(self, p, default)


def _describe(self: Any) -> dict[str, Any]:
    description: dict[str, Any] = _original("Job.describe")(self)
    container = description.get("container")
    if container is not None:
        if self.exit_code is not None:
            container["exitCode"] = self.exit_code
        reason = getattr(self, "_local_container_reason", None)
        if reason:
            container["reason"] = reason
    if self.job_stopped_reason is not None:
        description["statusReason"] = self.job_stopped_reason
    index = self.array_properties.get("index")
    if index is not None:
        description["arrayProperties"] = {"index": index}
    description["attempts"] = copy.deepcopy(self.attempts)
    return description


def _describe_short(self: Any) -> dict[str, Any]:
    summary: dict[str, Any] = _original("Job.describe_short")(self)
    index = self.array_properties.get("index")
    if index is not None:
        summary["arrayProperties"] = {"index": index}
    elif self._child_jobs:
        summary["arrayProperties"] = {"size": len(self._child_jobs)}
    return summary


def _list_jobs(
    self: Any,
    job_queue_name: str | None,
    array_job_id: str | None,
    job_status: str | None = None,
    filters: list[dict[str, Any]] | None = None,
) -> list[Any]:
    """As AWS: without jobStatus and filters only RUNNING jobs; a queue lists array parents, not children."""
    if job_status is None and filters is None:
        job_status = "RUNNING"
    jobs: list[Any] = _original("BatchBackend.list_jobs")(
        self, job_queue_name, array_job_id, job_status, filters
    )
    if array_job_id:
        return jobs
    return [job for job in jobs if job.array_properties.get("index") is None]


def _job_init(self: Any, *args: Any, **kwargs: Any) -> None:
    _original("Job.__init__")(self, *args, **kwargs)
    self._local_submitted = threading.Event()
    self._local_retry_strategy = None
    self._local_container_reason = None


def _status_get(self: Any) -> str | None:
    # The runtime drives every transition; moto's state manager must not move a job behind its back.
    return self._status  # type: ignore[no-any-return]


def _status_set(self: Any, value: str) -> None:
    self._status = value


_submit_request = threading.local()


def _submitjob_response(self: Any) -> str:
    _submit_request.retry_strategy = self._get_param("retryStrategy")
    try:
        return str(_ORIGINALS["BatchResponse.submitjob"](self))
    finally:
        _submit_request.retry_strategy = None


def _submit_job(self: Any, *args: Any, **kwargs: Any) -> tuple[str, str, str]:
    name, job_id, arn = _original("BatchBackend.submit_job")(self, *args, **kwargs)
    retry_strategy = getattr(_submit_request, "retry_strategy", None)
    parent = self.get_job_by_id(job_id)
    for job in [parent, *(parent._child_jobs or [])]:
        job._local_retry_strategy = retry_strategy
    if parent._child_jobs:
        parent.status = "PENDING"
    for job in [parent, *(parent._child_jobs or [])]:
        job._local_submitted.set()
    return name, job_id, arn


def _settle_array_parent(child: Any) -> None:
    """AWS ends an array parent once every child ended: SUCCEEDED if all did, FAILED otherwise."""
    parent = child.backend.get_job_by_id(child.job_id.rsplit(":", 1)[0])
    if parent is None or parent.job_stopped:
        return
    children = parent._child_jobs or []
    statuses = [job.status for job in children]
    if not all(status in TERMINAL_STATUSES for status in statuses):
        return
    failed = statuses.count("FAILED")
    if failed and not parent.stop:
        parent.job_stopped_reason = f"{failed} of {len(children)} array child jobs failed"
    parent.job_stopped_at = datetime.now()
    parent.job_stopped = True
    parent.status = "FAILED" if failed else "SUCCEEDED"


def _create_compute_environment(
    self: Any,
    compute_environment_name: str,
    _type: str,
    state: str,
    compute_resources: dict[str, Any],
    service_role: str,
    tags: dict[str, str] | None = None,
) -> Any:
    if not service_role:
        service_role = _batch_service_linked_role_arn(self.iam_backend)
    return _original("BatchBackend.create_compute_environment")(
        self, compute_environment_name, _type, state, compute_resources, service_role, tags=tags
    )


def _batch_service_linked_role_arn(iam_backend: Any) -> str:
    """AWS uses Batch's service-linked role when CreateComputeEnvironment has no serviceRole; create it once."""
    try:
        role = iam_backend.get_role(BATCH_SERVICE_LINKED_ROLE)
    except IAMNotFoundException:
        trust = {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Action": "sts:AssumeRole",
                    "Effect": "Allow",
                    "Principal": {"Service": BATCH_SERVICE_PRINCIPAL},
                }
            ],
        }
        role = iam_backend.create_role(
            BATCH_SERVICE_LINKED_ROLE,
            json.dumps(trust),
            f"/aws-service-role/{BATCH_SERVICE_PRINCIPAL}/",
            permissions_boundary=None,
            description="Allows Batch to create and manage AWS resources on your behalf.",
            tags=[],
            max_session_duration="3600",
            linked_service=BATCH_SERVICE_PRINCIPAL,
        )
    return str(role.arn)


def _update_compute_environment(
    self: Any,
    compute_environment_name: str,
    state: str | None,
    compute_resources: dict[str, Any] | None,
    service_role: str | None,
) -> tuple[str, str]:
    environment = self.get_compute_environment(compute_environment_name)
    if environment is None:
        raise ClientException(f"Compute environment {compute_environment_name} does not exist")
    result = _original("BatchBackend.update_compute_environment")(
        self, compute_environment_name, state, None, service_role
    )
    if compute_resources:
        if environment.compute_resources is None:
            raise InvalidParameterValueException(
                f"Compute environment {compute_environment_name} is UNMANAGED: computeResources cannot be updated"
            )
        updated = {**environment.compute_resources, **compute_resources}
        minimum, maximum = updated.get("minvCpus", 0), updated.get("maxvCpus", 0)
        if int(maximum) < int(minimum):
            raise InvalidParameterValueException(
                f"Compute environment {compute_environment_name}: maxvCpus {maximum} is below minvCpus {minimum}"
            )
        environment.compute_resources = updated
    return result  # type: ignore[no-any-return]


def _update_job_queue(
    self: Any,
    queue_name: str,
    priority: str | None,
    state: str | None,
    compute_env_order: list[dict[str, Any]] | None,
    schedule_policy: str | None,
) -> tuple[str, str]:
    if compute_env_order:
        resolved = []
        for item in compute_env_order:
            environment = self.get_compute_environment(item.get("computeEnvironment", ""))
            if environment is None:
                raise ClientException(f"Compute environment {item.get('computeEnvironment')} does not exist")
            resolved.append({**item, "computeEnvironment": environment.arn})
        compute_env_order = resolved
    return _original("BatchBackend.update_job_queue")(  # type: ignore[no-any-return]
        self, queue_name, priority, state, compute_env_order, schedule_policy
    )


def _terminate_job(self: Any, job_id: str, reason: str) -> None:
    _original("BatchBackend.terminate_job")(self, job_id, reason)
    job = self.get_job_by_id(job_id)
    for child in (job._child_jobs or []) if job is not None else []:
        child.terminate(reason)


def _cancel_job(self: Any, job_id: str, reason: str) -> None:
    _original("BatchBackend.cancel_job")(self, job_id, reason)
    job = self.get_job_by_id(job_id)
    for child in (job._child_jobs or []) if job is not None else []:
        _original("BatchBackend.cancel_job")(self, child.job_id, reason)


@functools.cache
def _managed_policy_documents() -> dict[str, Any]:
    return json.loads(iam_models.aws_managed_policies_data)  # type: ignore[no-any-return]


def _init_aws_policies(self: Any) -> list[Any]:
    """moto parses ~1,600 AWS managed policies for each of 6 partitions on every IAM reset (~1 s); parse once,
    and build them for the ``aws`` partition only, where this endpoint's regions live."""
    if not iam_models.load_iam_aws_managed_policies() or self.partition != "aws":
        return []
    return [
        iam_models.AWSManagedPolicy.from_data(name, self.account_id, self.region_name, document)
        for name, document in _managed_policy_documents().items()
    ]


def _run(self: Any) -> None:
    runtime = _installed_runtime
    if runtime is None:  # pragma: no cover - install_patches always sets it before replacing run
        raise RuntimeError("include.local_aws: Job.run replaced without a runtime")
    runtime.run(MotoBatchJob(self))


_REPLACEMENTS: dict[str, tuple[Any, str, Any]] = {
    "Job.run": (batch_models.Job, "run", _run),
    "Job.__init__": (batch_models.Job, "__init__", _job_init),
    "Job.describe": (batch_models.Job, "describe", _describe),
    "Job.describe_short": (batch_models.Job, "describe_short", _describe_short),
    "BatchBackend.list_jobs": (batch_models.BatchBackend, "list_jobs", _list_jobs),
    "Job._get_container_property": (batch_models.Job, "_get_container_property", _get_container_property),
    "Job.status": (batch_models.Job, "status", property(_status_get, _status_set)),
    "BatchBackend.submit_job": (batch_models.BatchBackend, "submit_job", _submit_job),
    "BatchBackend.create_compute_environment": (
        batch_models.BatchBackend,
        "create_compute_environment",
        _create_compute_environment,
    ),
    "BatchBackend.update_compute_environment": (
        batch_models.BatchBackend,
        "update_compute_environment",
        _update_compute_environment,
    ),
    "BatchBackend.update_job_queue": (batch_models.BatchBackend, "update_job_queue", _update_job_queue),
    "BatchBackend.terminate_job": (batch_models.BatchBackend, "terminate_job", _terminate_job),
    "BatchBackend.cancel_job": (batch_models.BatchBackend, "cancel_job", _cancel_job),
    "BatchResponse.submitjob": (batch_responses.BatchResponse, "submitjob", _submitjob_response),
    "IAMBackend._init_aws_policies": (iam_models.IAMBackend, "_init_aws_policies", _init_aws_policies),
}


# AWS accepts job names of 1 to 128 characters; moto 5.2.5 refuses a 1-character name.
AWS_JOB_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$")


def install_patches(runtime: ProcessRuntime) -> None:
    """Patch moto once per process (idempotent); refuse, naming what changed, when moto's internals moved."""
    global _installed_runtime
    with _INSTALL_LOCK:
        if _ORIGINALS:
            _installed_runtime = runtime
            return
        problems = moto_internals_problems()
        if problems:
            raise RuntimeError(
                "include.local_aws cannot patch this moto: "
                + "; ".join(problems)
                + " (see docs/local_aws.md)"
            )
        for name, (owner, attribute, replacement) in _REPLACEMENTS.items():
            _ORIGINALS[name] = inspect.getattr_static(owner, attribute)
            setattr(owner, attribute, replacement)
        batch_models.JOB_NAME_REGEX = AWS_JOB_NAME_PATTERN
        _installed_runtime = runtime
        log.debug("moto %s patched: Batch jobs run as host processes", moto.__version__)
