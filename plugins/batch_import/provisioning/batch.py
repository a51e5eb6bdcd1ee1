"""AWS Batch: compute environment, job queue and job definition, plus the network they run in.

Compute environments and queues are created when missing, updated in place where they differ, and waited on
until VALID and ENABLED (boto3 has no Batch waiters; the provider's sensors accept DELETED as done and ignore
``state``, so this module polls with a bound). A job-definition revision is registered only when the content
differs from the latest ACTIVE revision. Nothing is disabled, deregistered or deleted.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from batch_import.provisioning.outcome import ProvisioningError, ProvisionResult
from batch_import.provisioning.polling import poll_until
from csv_importer.exit_codes import NON_RETRYABLE

if TYPE_CHECKING:
    from batch_import.config import PipelineConfig

log = logging.getLogger(__name__)

# The job's exit codes a retry cannot fix, defined once by the job (USAGE, BAD_INPUT, REJECT_RATIO_EXCEEDED).
# Batch exits on them; every other failure is retried up to ``attempts``.
NON_RETRYABLE_EXIT_CODES = tuple(sorted(int(code) for code in NON_RETRYABLE))

VALID = "VALID"
INVALID = "INVALID"
ENABLED = "ENABLED"
TRANSITIONAL_STATUSES = ("CREATING", "UPDATING", "DELETING")
FARGATE_TYPES = ("FARGATE", "FARGATE_SPOT")
ALLOCATION_STRATEGY = {"EC2": "BEST_FIT_PROGRESSIVE", "SPOT": "SPOT_CAPACITY_OPTIMIZED"}


@dataclass(frozen=True)
class Network:
    """Subnets and security groups a compute environment runs in."""

    subnets: tuple[str, ...]
    security_group_ids: tuple[str, ...]


@dataclass(frozen=True)
class ReadyWait:
    """How long and how often to poll until a compute environment or queue is VALID and ENABLED."""

    timeout_seconds: float = 900
    poll_seconds: float = 10


# --- network -------------------------------------------------------------------------------------------------


def resolve_network(ec2_client: Any, *, subnets: Sequence[str], security_group_ids: Sequence[str]) -> Network:
    """The configured subnets/security groups; where empty, the default VPC's subnets / default group."""
    if subnets and security_group_ids:
        return Network(tuple(subnets), tuple(security_group_ids))
    vpcs = ec2_client.describe_vpcs(Filters=[{"Name": "isDefault", "Values": ["true"]}])["Vpcs"]
    if not vpcs:
        raise ProvisioningError(
            "Batch network: batch.subnets or batch.security_group_ids is empty and the region has no default "
            "VPC to take them from; configure both (CSV_IMPORT__BATCH__SUBNETS, "
            "CSV_IMPORT__BATCH__SECURITY_GROUP_IDS)"
        )
    vpc_id = vpcs[0]["VpcId"]
    vpc_filter = [{"Name": "vpc-id", "Values": [vpc_id]}]
    if not subnets:
        subnet_ids: list[str] = []
        for page in ec2_client.get_paginator("describe_subnets").paginate(Filters=vpc_filter):
            subnet_ids.extend(subnet["SubnetId"] for subnet in page["Subnets"])
        subnets = sorted(subnet_ids)
    if not security_group_ids:
        groups = ec2_client.describe_security_groups(
            Filters=[*vpc_filter, {"Name": "group-name", "Values": ["default"]}]
        )["SecurityGroups"]
        security_group_ids = [group["GroupId"] for group in groups]
    if not subnets or not security_group_ids:
        raise ProvisioningError(
            f"Batch network: the default VPC {vpc_id} has no subnets or no default security group; configure "
            "batch.subnets and batch.security_group_ids"
        )
    return Network(tuple(subnets), tuple(security_group_ids))


# --- compute environment ------------------------------------------------------------------------------------


def compute_resources(
    *,
    compute_type: str,
    max_vcpus: int,
    network: Network,
    instance_types: Sequence[str] = (),
    instance_profile_arn: str = "",
) -> dict[str, Any]:
    """The ``computeResources`` of a managed compute environment of ``compute_type``."""
    resources: dict[str, Any] = {
        "type": compute_type,
        "maxvCpus": max_vcpus,
        "subnets": list(network.subnets),
        "securityGroupIds": list(network.security_group_ids),
    }
    if compute_type not in FARGATE_TYPES:
        if not instance_profile_arn:
            raise ProvisioningError(
                f"Batch compute environment of type {compute_type} needs an instance profile"
            )
        resources.update(
            minvCpus=0,
            instanceTypes=list(instance_types),
            instanceRole=instance_profile_arn,
            allocationStrategy=ALLOCATION_STRATEGY[compute_type],
        )
    return resources


def ensure_compute_environment(
    batch_client: Any,
    *,
    name: str,
    resources: Mapping[str, Any],
    wait: ReadyWait | None = None,
) -> ProvisionResult:
    """Create the managed compute environment, or update maxvCpus/network/instance types/state in place."""
    wait = wait or ReadyWait()
    environment = _describe_compute_environment(batch_client, name)
    if environment is None:
        batch_client.create_compute_environment(
            computeEnvironmentName=name, type="MANAGED", state=ENABLED, computeResources=dict(resources)
        )
        log.info("Batch compute environment %s created (%s)", name, resources["type"])
        environment = _wait_compute_environment_ready(batch_client, name, wait)
        return ProvisionResult.from_changes(
            "compute_environment",
            name,
            created=True,
            changes=[f"{resources['type']}, maxvCpus {resources['maxvCpus']}"],
            arn=environment["computeEnvironmentArn"],
        )

    if environment.get("status") in TRANSITIONAL_STATUSES:
        environment = _wait_compute_environment_ready(batch_client, name, wait)
    update, changes = _compute_environment_update(environment, resources)
    if update:
        batch_client.update_compute_environment(computeEnvironment=name, **update)
        log.info("Batch compute environment %s updated: %s", name, "; ".join(changes))
        environment = _wait_compute_environment_ready(batch_client, name, wait)
    elif not _is_ready(environment, f"Batch compute environment {name}"):
        environment = _wait_compute_environment_ready(batch_client, name, wait)
    return ProvisionResult.from_changes(
        "compute_environment", name, created=False, changes=changes, arn=environment["computeEnvironmentArn"]
    )


def _describe_compute_environment(batch_client: Any, name: str) -> dict[str, Any] | None:
    found = batch_client.describe_compute_environments(computeEnvironments=[name])["computeEnvironments"]
    return found[0] if found else None


def _compute_environment_update(
    environment: Mapping[str, Any], resources: Mapping[str, Any]
) -> tuple[dict[str, Any], list[str]]:
    """The UpdateComputeEnvironment arguments that bring ``environment`` to ``resources``, and why."""
    name = environment["computeEnvironmentName"]
    current = environment.get("computeResources", {})
    if environment.get("type") != "MANAGED" or current.get("type") != resources["type"]:
        raise ProvisioningError(
            f"Batch compute environment {name}: is {environment.get('type')} {current.get('type')}, the config "
            f"asks for MANAGED {resources['type']}; the type cannot change in place and nothing is deleted. "
            "Configure another batch.compute_environment name for the new type."
        )
    changed: dict[str, Any] = {}
    changes: list[str] = []
    if int(current.get("maxvCpus", -1)) != int(resources["maxvCpus"]):
        changed["maxvCpus"] = resources["maxvCpus"]
        changes.append(f"maxvCpus: {current.get('maxvCpus')} -> {resources['maxvCpus']}")
    for key in ("subnets", "securityGroupIds", "instanceTypes"):
        if key in resources and sorted(current.get(key, [])) != sorted(resources[key]):
            changed[key] = list(resources[key])
            changes.append(f"{key}: {sorted(current.get(key, []))} -> {sorted(resources[key])}")
    update: dict[str, Any] = {}
    if changed:
        update["computeResources"] = changed
    if environment.get("state") != ENABLED:
        update["state"] = ENABLED
        changes.append(f"state: {environment.get('state')} -> {ENABLED}")
    return update, changes


def _is_ready(resource: Mapping[str, Any], what: str) -> bool:
    status = resource.get("status")
    if status == INVALID:
        raise ProvisioningError(f"{what} is INVALID: {resource.get('statusReason', 'no reason given')}")
    return status == VALID and resource.get("state") == ENABLED


def _wait_until_ready(
    describe: Callable[[], Mapping[str, Any] | None], what: str, wait: ReadyWait
) -> dict[str, Any]:
    """Poll ``describe`` until the resource is VALID and ENABLED; INVALID or a vanished resource fails."""

    def describe_existing() -> dict[str, Any]:
        resource = describe()
        if resource is None:
            raise ProvisioningError(f"{what} disappeared while waiting for it to become VALID")
        return dict(resource)

    return poll_until(
        describe_existing,
        lambda resource: _is_ready(resource, what),
        what=f"{what} to be VALID and ENABLED",
        timeout_seconds=wait.timeout_seconds,
        poll_seconds=wait.poll_seconds,
    )


def _wait_compute_environment_ready(batch_client: Any, name: str, wait: ReadyWait) -> dict[str, Any]:
    return _wait_until_ready(
        lambda: _describe_compute_environment(batch_client, name), f"Batch compute environment {name}", wait
    )


def compute_environment_arn(batch_client: Any, name: str) -> str:
    """The ARN of an existing compute environment (the queue refers to it by ARN)."""
    environment = _describe_compute_environment(batch_client, name)
    if environment is None:
        raise ProvisioningError(
            f"Batch compute environment {name} does not exist; the job queue needs it (run its task first)"
        )
    return environment["computeEnvironmentArn"]


# --- job queue ------------------------------------------------------------------------------------------------


def ensure_job_queue(
    batch_client: Any,
    *,
    name: str,
    priority: int,
    compute_environment_arns: Sequence[str],
    wait: ReadyWait | None = None,
) -> ProvisionResult:
    """Create the queue, or update priority / compute-environment order / state in place."""
    wait = wait or ReadyWait()
    order = [
        {"order": position, "computeEnvironment": arn}
        for position, arn in enumerate(compute_environment_arns, start=1)
    ]
    queue = _describe_job_queue(batch_client, name)
    if queue is None:
        batch_client.create_job_queue(
            jobQueueName=name, state=ENABLED, priority=priority, computeEnvironmentOrder=order
        )
        log.info("Batch job queue %s created", name)
        queue = _wait_job_queue_ready(batch_client, name, wait)
        return ProvisionResult.from_changes(
            "job_queue",
            name,
            created=True,
            changes=[f"priority {priority}"],
            arn=queue["jobQueueArn"],
        )

    if queue.get("status") in TRANSITIONAL_STATUSES:
        queue = _wait_job_queue_ready(batch_client, name, wait)
    update: dict[str, Any] = {}
    changes: list[str] = []
    if int(queue.get("priority", -1)) != priority:
        update["priority"] = priority
        changes.append(f"priority: {queue.get('priority')} -> {priority}")
    current_order = _comparable_order(queue.get("computeEnvironmentOrder", []))
    if current_order != _comparable_order(order):
        # ARNs, not names: valid on AWS, and what moto's UpdateJobQueue requires.
        update["computeEnvironmentOrder"] = order
        changes.append(f"compute environments: {current_order} -> {_comparable_order(order)}")
    if queue.get("state") != ENABLED:
        update["state"] = ENABLED
        changes.append(f"state: {queue.get('state')} -> {ENABLED}")
    if update:
        batch_client.update_job_queue(jobQueue=name, **update)
        log.info("Batch job queue %s updated: %s", name, "; ".join(changes))
        queue = _wait_job_queue_ready(batch_client, name, wait)
    elif not _is_ready(queue, f"Batch job queue {name}"):
        queue = _wait_job_queue_ready(batch_client, name, wait)
    return ProvisionResult.from_changes(
        "job_queue", name, created=False, changes=changes, arn=queue["jobQueueArn"]
    )


def _describe_job_queue(batch_client: Any, name: str) -> dict[str, Any] | None:
    found = batch_client.describe_job_queues(jobQueues=[name])["jobQueues"]
    return found[0] if found else None


def _comparable_order(order: Sequence[Mapping[str, Any]]) -> list[tuple[int, str]]:
    """``[(order, compute environment name)]``: AWS answers with ARNs, a name is the ARN's last segment."""
    return sorted((int(entry["order"]), entry["computeEnvironment"].rsplit("/", 1)[-1]) for entry in order)


def _wait_job_queue_ready(batch_client: Any, name: str, wait: ReadyWait) -> dict[str, Any]:
    return _wait_until_ready(lambda: _describe_job_queue(batch_client, name), f"Batch job queue {name}", wait)


# --- job definition -------------------------------------------------------------------------------------------


def retry_strategy(attempts: int) -> dict[str, Any]:
    """Exit at once on the job's non-retryable exit codes, retry anything else up to ``attempts`` times."""
    evaluate_on_exit = [{"onExitCode": str(code), "action": "EXIT"} for code in NON_RETRYABLE_EXIT_CODES]
    evaluate_on_exit.append({"onExitCode": "*", "action": "RETRY"})
    return {"attempts": attempts, "evaluateOnExit": evaluate_on_exit}


def job_definition_content(
    *,
    image: str,
    command: Sequence[str],
    vcpus: float,
    memory_mib: int,
    environment: Mapping[str, str],
    job_role_arn: str,
    execution_role_arn: str,
    attempts: int,
    attempt_timeout_seconds: int,
    log_group: str,
    log_region: str,
    fargate: bool,
    assign_public_ip: bool,
) -> dict[str, Any]:
    """The RegisterJobDefinition arguments (without the name) of the import job's definition."""
    container: dict[str, Any] = {
        "image": image,
        "command": list(command),
        "resourceRequirements": [
            {"type": "VCPU", "value": f"{vcpus:g}"},
            {"type": "MEMORY", "value": str(memory_mib)},
        ],
        # Empty values are left out: AWS keeps them, moto drops them, and the job treats absent as empty.
        "environment": [{"name": key, "value": value} for key, value in sorted(environment.items()) if value],
        "jobRoleArn": job_role_arn,
        "executionRoleArn": execution_role_arn,
        "logConfiguration": {
            "logDriver": "awslogs",
            "options": {"awslogs-group": log_group, "awslogs-region": log_region},
        },
    }
    if fargate:
        container["networkConfiguration"] = {"assignPublicIp": "ENABLED" if assign_public_ip else "DISABLED"}
    return {
        "type": "container",
        "platformCapabilities": ["FARGATE" if fargate else "EC2"],
        "containerProperties": container,
        "retryStrategy": retry_strategy(attempts),
        "timeout": {"attemptDurationSeconds": attempt_timeout_seconds},
        "propagateTags": True,
    }


def ensure_job_definition(batch_client: Any, *, name: str, content: Mapping[str, Any]) -> ProvisionResult:
    """Register a revision only when ``content`` differs from the latest ACTIVE revision's."""
    latest = _latest_active_revision(batch_client, name)
    differences = [] if latest is None else job_definition_differences(latest, content)
    if latest is not None and not differences:
        return ProvisionResult.from_changes(
            "job_definition", name, created=False, changes=(), arn=latest["jobDefinitionArn"]
        )
    registered = batch_client.register_job_definition(jobDefinitionName=name, **content)
    log.info("Batch job definition %s: registered revision %s", name, registered["revision"])
    changes = [f"revision {registered['revision']} registered", *differences]
    return ProvisionResult.from_changes(
        "job_definition", name, created=latest is None, changes=changes, arn=registered["jobDefinitionArn"]
    )


def _latest_active_revision(batch_client: Any, name: str) -> dict[str, Any] | None:
    latest: dict[str, Any] | None = None
    paginator = batch_client.get_paginator("describe_job_definitions")
    for page in paginator.paginate(jobDefinitionName=name, status="ACTIVE"):
        for definition in page["jobDefinitions"]:
            if definition.get("status", "ACTIVE") == "ACTIVE" and (
                latest is None or definition["revision"] > latest["revision"]
            ):
                latest = definition
    return latest


def job_definition_differences(current: Mapping[str, Any], wanted: Mapping[str, Any]) -> list[str]:
    """``field: current -> wanted`` for every field of ``wanted`` whose normalised value differs.

    Only the fields this module sets are compared (AWS adds defaults such as ``volumes: []``), one level
    deeper inside ``containerProperties``.
    """
    differences = []
    for key, wanted_value in wanted.items():
        current_value = current.get(key)
        if key == "containerProperties":
            current_container = current_value or {}
            for inner_key, inner_wanted in wanted_value.items():
                inner_current = current_container.get(inner_key)
                if _normalise(inner_key, inner_current) != _normalise(inner_key, inner_wanted):
                    differences.append(
                        f"containerProperties.{inner_key}: {inner_current!r} -> {inner_wanted!r}"
                    )
        elif _normalise(key, current_value) != _normalise(key, wanted_value):
            differences.append(f"{key}: {current_value!r} -> {wanted_value!r}")
    return differences


def _normalise(key: str, value: Any) -> Any:
    if value is None:
        return None
    if key == "environment":
        return sorted((entry["name"], entry["value"]) for entry in value if entry.get("value"))
    if key == "resourceRequirements":
        return sorted((entry["type"], _number_text(entry["value"])) for entry in value)
    if key == "retryStrategy":
        return {
            "attempts": int(value.get("attempts", 1)),
            "evaluateOnExit": [
                {k: (str(v).upper() if k == "action" else str(v)) for k, v in sorted(condition.items())}
                for condition in value.get("evaluateOnExit", [])
            ],
        }
    if key == "timeout":
        return int(value.get("attemptDurationSeconds", 0))
    if key == "logConfiguration":
        return {
            "logDriver": value.get("logDriver"),
            "options": dict(sorted(value.get("options", {}).items())),
        }
    if key == "networkConfiguration":
        return value.get("assignPublicIp")
    if isinstance(value, list):
        return list(value)
    return value


def _number_text(value: Any) -> str:
    return f"{float(value):g}"


def job_environment_from_config(config: PipelineConfig) -> dict[str, str]:
    """The job definition's environment: the job's ``deployment`` inputs (:mod:`csv_importer.inputs`) from the
    pipeline config, the same for every import.

    Per-import inputs (``key``, ``import_id``, ``expected_etag``, ``shard_count``) come as container overrides at
    submit time. The config's ``batch.job_environment`` ``NAME=value`` entries are added; the job's own inputs win.
    """
    from csv_importer.inputs import deployment_environment

    environment = dict(entry.split("=", 1) for entry in config.batch.job_environment)
    environment |= deployment_environment(
        {
            "bucket": config.bucket.name,
            "table": config.table.name,
            "writer_concurrency": config.import_.writer_concurrency,
            "max_reject_ratio": config.import_.max_reject_ratio,
            "column_types": config.import_.column_types,
            "empty_cells": config.import_.empty_cells,
            "manifest_prefix": config.bucket.manifest_prefix,
            "rejected_prefix": config.bucket.rejected_prefix,
        }
    )
    return {key: value for key, value in environment.items() if value}
