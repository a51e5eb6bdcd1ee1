"""The CloudWatch log group the job definition's awslogs driver writes to. Never deleted."""

from __future__ import annotations

import logging
from typing import Any

from botocore.exceptions import ClientError

from batch_import.provisioning.outcome import ProvisionResult

log = logging.getLogger(__name__)

RESOURCE = "log_group"


def ensure_log_group(logs_client: Any, *, log_group_name: str) -> ProvisionResult:
    """Create the log group if it does not exist (the execution role may write to it, not create it)."""
    existing = _find_log_group(logs_client, log_group_name)
    if existing is not None:
        return ProvisionResult.from_changes(
            RESOURCE, log_group_name, created=False, changes=(), arn=existing.get("arn", "")
        )
    try:
        logs_client.create_log_group(logGroupName=log_group_name)
    except ClientError as err:
        if err.response.get("Error", {}).get("Code") != "ResourceAlreadyExistsException":
            raise
    log.info("CloudWatch log group %s created", log_group_name)
    created = _find_log_group(logs_client, log_group_name) or {}
    return ProvisionResult.from_changes(
        RESOURCE, log_group_name, created=True, changes=(), arn=created.get("arn", "")
    )


def _find_log_group(logs_client: Any, log_group_name: str) -> dict[str, Any] | None:
    paginator = logs_client.get_paginator("describe_log_groups")
    for page in paginator.paginate(logGroupNamePrefix=log_group_name):
        for group in page.get("logGroups", []):
            if group["logGroupName"] == log_group_name:
                return group
    return None
