"""The AWS account and partition the credentials belong to, so ARNs are derived and never hard-coded."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class AwsAccount:
    """Account id, partition (``aws``, ``aws-cn``, ``aws-us-gov``) and region that ARNs are built from."""

    account_id: str
    partition: str
    region: str

    def arn(self, service: str, resource: str, *, regional: bool = True, in_account: bool = True) -> str:
        """``arn:<partition>:<service>:<region or empty>:<account or empty>:<resource>``."""
        region = self.region if regional else ""
        account = self.account_id if in_account else ""
        return f"arn:{self.partition}:{service}:{region}:{account}:{resource}"

    def aws_managed_policy_arn(self, policy_path_and_name: str) -> str:
        """ARN of an AWS managed IAM policy, e.g. ``service-role/AmazonECSTaskExecutionRolePolicy``."""
        return f"arn:{self.partition}:iam::aws:policy/{policy_path_and_name}"


def describe_account(sts_client: Any, region: str) -> AwsAccount:
    """Ask STS GetCallerIdentity whose credentials these are; the partition comes from the caller's ARN."""
    identity = sts_client.get_caller_identity()
    caller_arn = identity["Arn"]
    parts = caller_arn.split(":")
    if len(parts) < 6 or parts[0] != "arn":
        raise ValueError(f"STS GetCallerIdentity returned an ARN that cannot be parsed: {caller_arn!r}")
    return AwsAccount(account_id=identity["Account"], partition=parts[1], region=region)
