"""IAM for the job: the job role (least privilege), the execution role and, for EC2, the instance role/profile.

Roles are created when missing; a trust policy or inline policy is rewritten only when its parsed,
normalised JSON differs; missing managed policies are attached. Extra policies someone else attached are
left alone (logged), and nothing is ever detached or deleted.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from botocore.exceptions import ClientError

from batch_import.provisioning.account import AwsAccount
from batch_import.provisioning.documents import normalise_policy, parse_policy, policy_json
from batch_import.provisioning.outcome import ProvisioningError, ProvisionResult

log = logging.getLogger(__name__)

ECS_TASKS = "ecs-tasks.amazonaws.com"
EC2 = "ec2.amazonaws.com"
JOB_POLICY_NAME = "csv-import-job-access"
EXECUTION_ROLE_POLICY = "service-role/AmazonECSTaskExecutionRolePolicy"
INSTANCE_ROLE_POLICY = "service-role/AmazonEC2ContainerServiceforEC2Role"


def trust_policy(service: str) -> dict[str, Any]:
    """A trust policy letting one AWS service principal assume the role."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"},
        ],
    }


def job_role_policy(
    account: AwsAccount,
    *,
    bucket_name: str,
    landing_prefix: str,
    rejected_prefix: str,
    manifest_prefix: str,
    table_name: str,
    kms_key_arn: str = "",
) -> dict[str, Any]:
    """What the import job may do, and nothing more.

    Read the landing files, write rejected rows and manifests, list the landing prefix (so a missing
    object is a 404, not a 403), describe the table, write items to it and read back an item DynamoDB refused
    (by its key: GetItem). The job never queries the
    verification index, so the index is not in the policy.
    """
    bucket_arn = account.arn("s3", bucket_name, regional=False, in_account=False)
    statements: list[dict[str, Any]] = [
        {
            "Sid": "ReadLandingFiles",
            "Effect": "Allow",
            "Action": "s3:GetObject",
            "Resource": f"{bucket_arn}/{landing_prefix}*",
        },
        {
            "Sid": "ListLandingPrefix",
            "Effect": "Allow",
            "Action": "s3:ListBucket",
            "Resource": bucket_arn,
            "Condition": {"StringLike": {"s3:prefix": [f"{landing_prefix}*"]}},
        },
        {
            "Sid": "WriteRejectedRowsAndManifests",
            "Effect": "Allow",
            "Action": "s3:PutObject",
            "Resource": [f"{bucket_arn}/{rejected_prefix}*", f"{bucket_arn}/{manifest_prefix}*"],
        },
        {
            "Sid": "WriteItems",
            "Effect": "Allow",
            # GetItem: the job reads back a key DynamoDB refused, so distinct_keys says what the table holds.
            "Action": [
                "dynamodb:DescribeTable",
                "dynamodb:BatchWriteItem",
                "dynamodb:PutItem",
                "dynamodb:GetItem",
            ],
            "Resource": account.arn("dynamodb", f"table/{table_name}"),
        },
    ]
    if kms_key_arn:
        statements.append(
            {
                "Sid": "UseBucketKey",
                "Effect": "Allow",
                "Action": ["kms:Decrypt", "kms:GenerateDataKey"],
                "Resource": kms_key_arn,
            }
        )
    return {"Version": "2012-10-17", "Statement": statements}


def ensure_role(
    iam_client: Any,
    *,
    resource: str,
    role_name: str,
    path: str,
    trusted_service: str,
    managed_policy_arns: Sequence[str] = (),
    inline_policy_name: str = "",
    inline_policy: dict[str, Any] | None = None,
    description: str = "",
) -> ProvisionResult:
    """Create the role if missing; align its trust policy, managed attachments and one inline policy."""
    role = _get_role(iam_client, role_name)
    created = role is None
    changes: list[str] = []
    wanted_trust = trust_policy(trusted_service)
    if role is None:
        role = _create_role(iam_client, role_name, path, wanted_trust, description)
    else:
        if role.get("Path") != path:
            log.warning(
                "IAM role %s has path %s, not the configured %s; a role's path cannot change in place, "
                "keeping it",
                role_name,
                role.get("Path"),
                path,
            )
        if normalise_policy(role["AssumeRolePolicyDocument"]) != normalise_policy(wanted_trust):
            iam_client.update_assume_role_policy(RoleName=role_name, PolicyDocument=policy_json(wanted_trust))
            changes.append(f"trust policy -> {trusted_service}")

    changes.extend(_attach_missing_policies(iam_client, role_name, managed_policy_arns, created=created))
    if inline_policy is not None:
        changes.extend(
            _put_inline_policy_if_different(iam_client, role_name, inline_policy_name, inline_policy)
        )
    if created:
        changes.insert(0, f"trusts {trusted_service}")
    return ProvisionResult.from_changes(
        resource, role_name, created=created, changes=changes, arn=role["Arn"]
    )


def ensure_instance_profile(
    iam_client: Any, *, resource: str, profile_name: str, path: str, role_name: str
) -> ProvisionResult:
    """Create the instance profile if missing and make sure it holds the instance role."""
    profile = _get_instance_profile(iam_client, profile_name)
    created = profile is None
    changes: list[str] = []
    if profile is None:
        try:
            profile = iam_client.create_instance_profile(InstanceProfileName=profile_name, Path=path)[
                "InstanceProfile"
            ]
        except ClientError as err:
            if err.response.get("Error", {}).get("Code") != "EntityAlreadyExists":
                raise
        iam_client.get_waiter("instance_profile_exists").wait(InstanceProfileName=profile_name)
        profile = iam_client.get_instance_profile(InstanceProfileName=profile_name)["InstanceProfile"]
        changes.append(f"path {path}")
    role_names = [role["RoleName"] for role in profile.get("Roles", [])]
    if role_name not in role_names:
        if role_names:
            raise ProvisioningError(
                f"IAM instance profile {profile_name}: holds role {', '.join(role_names)}, not {role_name}; a "
                "profile holds "
                "one role and nothing is removed automatically. Remove it by hand or configure another "
                "iam.instance_role name."
            )
        iam_client.add_role_to_instance_profile(InstanceProfileName=profile_name, RoleName=role_name)
        changes.append(f"role {role_name} added")
    return ProvisionResult.from_changes(
        resource, profile_name, created=created, changes=changes, arn=profile["Arn"]
    )


def _get_role(iam_client: Any, role_name: str) -> dict[str, Any] | None:
    try:
        return iam_client.get_role(RoleName=role_name)["Role"]
    except ClientError as err:
        if err.response.get("Error", {}).get("Code") == "NoSuchEntity":
            return None
        raise


def _get_instance_profile(iam_client: Any, profile_name: str) -> dict[str, Any] | None:
    try:
        return iam_client.get_instance_profile(InstanceProfileName=profile_name)["InstanceProfile"]
    except ClientError as err:
        if err.response.get("Error", {}).get("Code") == "NoSuchEntity":
            return None
        raise


def _create_role(
    iam_client: Any, role_name: str, path: str, trust: dict[str, Any], description: str
) -> dict[str, Any]:
    try:
        iam_client.create_role(
            RoleName=role_name,
            Path=path,
            AssumeRolePolicyDocument=policy_json(trust),
            Description=description,
        )
    except ClientError as err:
        if err.response.get("Error", {}).get("Code") != "EntityAlreadyExists":
            raise
        log.info("IAM role %s was created concurrently; continuing", role_name)
    iam_client.get_waiter("role_exists").wait(RoleName=role_name)
    log.info("IAM role %s created", role_name)
    return iam_client.get_role(RoleName=role_name)["Role"]


def _attach_missing_policies(
    iam_client: Any, role_name: str, policy_arns: Sequence[str], *, created: bool
) -> list[str]:
    attached: set[str] = set()
    if not created:
        paginator = iam_client.get_paginator("list_attached_role_policies")
        for page in paginator.paginate(RoleName=role_name):
            attached.update(policy["PolicyArn"] for policy in page["AttachedPolicies"])
    changes = []
    for policy_arn in policy_arns:
        if policy_arn not in attached:
            iam_client.attach_role_policy(RoleName=role_name, PolicyArn=policy_arn)
            changes.append(f"attached {policy_arn}")
    extra = attached - set(policy_arns)
    if extra:
        log.warning(
            "IAM role %s has other managed policies attached, left alone: %s", role_name, sorted(extra)
        )
    return changes


def _put_inline_policy_if_different(
    iam_client: Any, role_name: str, policy_name: str, policy: dict[str, Any]
) -> list[str]:
    try:
        current = iam_client.get_role_policy(RoleName=role_name, PolicyName=policy_name)["PolicyDocument"]
    except ClientError as err:
        if err.response.get("Error", {}).get("Code") != "NoSuchEntity":
            raise
        current = None
    if current is not None and normalise_policy(parse_policy(current)) == normalise_policy(policy):
        return []
    iam_client.put_role_policy(RoleName=role_name, PolicyName=policy_name, PolicyDocument=policy_json(policy))
    return [f"inline policy {policy_name} {'written' if current is None else 'updated'}"]


def role_arn(iam_client: Any, role_name: str) -> str:
    """The ARN of an existing role (the job definition refers to its roles by ARN)."""
    role = _get_role(iam_client, role_name)
    if role is None:
        raise ProvisioningError(f"IAM role {role_name} does not exist; its ensure task must run first")
    return str(role["Arn"])


def instance_profile_arn(iam_client: Any, profile_name: str) -> str:
    """The ARN of an existing instance profile (an EC2/SPOT compute environment refers to it by ARN)."""
    profile = _get_instance_profile(iam_client, profile_name)
    if profile is None:
        raise ProvisioningError(
            f"IAM instance profile {profile_name} does not exist; its ensure task must run first"
        )
    return str(profile["Arn"])
