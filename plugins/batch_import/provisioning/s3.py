"""The landing bucket: exists, public access blocked, default encryption on, the feeds' event notifications.

Never deleted or emptied; notifications someone else configured on the bucket are kept.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from batch_import.provisioning.outcome import ProvisioningError, ProvisionResult

log = logging.getLogger(__name__)

RESOURCE = "bucket"
PUBLIC_ACCESS_BLOCKED = {
    "BlockPublicAcls": True,
    "IgnorePublicAcls": True,
    "BlockPublicPolicy": True,
    "RestrictPublicBuckets": True,
}


def desired_encryption(kms_key_id: str) -> dict[str, Any]:
    """The default-encryption rule: SSE-S3 (AES256), or SSE-KMS with a bucket key when a key is configured."""
    if not kms_key_id:
        return {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}
    return {
        "ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": kms_key_id},
        "BucketKeyEnabled": True,
    }


def ensure_bucket(s3_client: Any, *, bucket_name: str, region: str, kms_key_id: str = "") -> ProvisionResult:
    """Create the bucket if missing; block public access and set default encryption where they differ."""
    created = False
    if not _bucket_exists(s3_client, bucket_name):
        _create_bucket(s3_client, bucket_name, region)
        created = True

    changes: list[str] = []
    current_block = _public_access_block(s3_client, bucket_name)
    if current_block != PUBLIC_ACCESS_BLOCKED:
        s3_client.put_public_access_block(
            Bucket=bucket_name, PublicAccessBlockConfiguration=dict(PUBLIC_ACCESS_BLOCKED)
        )
        changes.append(f"public access block: {current_block} -> all blocked")

    wanted_rule = desired_encryption(kms_key_id)
    current_rule = _encryption_rule(s3_client, bucket_name)
    if _comparable_rule(current_rule) != _comparable_rule(wanted_rule):
        s3_client.put_bucket_encryption(
            Bucket=bucket_name, ServerSideEncryptionConfiguration={"Rules": [wanted_rule]}
        )
        changes.append(f"default encryption: {_algorithm(current_rule)} -> {_algorithm(wanted_rule)}")
    if created:
        changes.insert(0, f"region {region}")
    return ProvisionResult.from_changes(RESOURCE, bucket_name, created=created, changes=changes)


def _bucket_exists(s3_client: Any, bucket_name: str) -> bool:
    try:
        s3_client.head_bucket(Bucket=bucket_name)
    except ClientError as err:
        code = err.response.get("Error", {}).get("Code")
        if code in ("404", "NoSuchBucket", "NotFound"):
            return False
        if code in ("403", "AccessDenied", "Forbidden"):
            raise ProvisioningError(
                f"S3 bucket {bucket_name}: exists but is not accessible with these credentials "
                "(owned by another account, or access denied); choose another bucket.name"
            ) from err
        raise
    return True


def _create_bucket(s3_client: Any, bucket_name: str, region: str) -> None:
    arguments: dict[str, Any] = {"Bucket": bucket_name}
    if region != "us-east-1":
        arguments["CreateBucketConfiguration"] = {"LocationConstraint": region}
    try:
        s3_client.create_bucket(**arguments)
    except ClientError as err:
        code = err.response.get("Error", {}).get("Code")
        if code == "BucketAlreadyOwnedByYou":
            log.info("S3 bucket %s was created concurrently; continuing", bucket_name)
        elif code == "BucketAlreadyExists":
            raise ProvisioningError(
                f"S3 bucket {bucket_name}: the name is taken by another account; choose another bucket.name"
            ) from err
        else:
            raise
    s3_client.get_waiter("bucket_exists").wait(Bucket=bucket_name)
    log.info("S3 bucket %s created in %s", bucket_name, region)


def _public_access_block(s3_client: Any, bucket_name: str) -> dict[str, bool] | None:
    try:
        response = s3_client.get_public_access_block(Bucket=bucket_name)
    except ClientError as err:
        if err.response.get("Error", {}).get("Code") == "NoSuchPublicAccessBlockConfiguration":
            return None
        raise
    return {key: bool(response["PublicAccessBlockConfiguration"].get(key)) for key in PUBLIC_ACCESS_BLOCKED}


def _encryption_rule(s3_client: Any, bucket_name: str) -> dict[str, Any] | None:
    try:
        response = s3_client.get_bucket_encryption(Bucket=bucket_name)
    except ClientError as err:
        if err.response.get("Error", {}).get("Code") == "ServerSideEncryptionConfigurationNotFoundError":
            return None
        raise
    rules = response.get("ServerSideEncryptionConfiguration", {}).get("Rules", [])
    return rules[0] if rules else None


def _comparable_rule(rule: dict[str, Any] | None) -> tuple[str, str, bool] | None:
    if not rule:
        return None
    default = rule.get("ApplyServerSideEncryptionByDefault", {})
    algorithm = default.get("SSEAlgorithm", "")
    if algorithm == "AES256":
        # The bucket-key flag only means something for KMS; S3 may report it either way for AES256.
        return (algorithm, "", False)
    return (algorithm, default.get("KMSMasterKeyID", ""), bool(rule.get("BucketKeyEnabled", False)))


def _algorithm(rule: dict[str, Any] | None) -> str:
    if not rule:
        return "none"
    default = rule.get("ApplyServerSideEncryptionByDefault", {})
    key = default.get("KMSMasterKeyID")
    return f"{default.get('SSEAlgorithm')}({key})" if key else str(default.get("SSEAlgorithm"))


NOTIFICATIONS_RESOURCE = "event_notifications"
CREATED_EVENTS = ["s3:ObjectCreated:*"]
# Sections of a bucket's notification configuration; all are sent back on a Put (S3 replaces the whole).
_NOTIFICATION_SECTIONS = (
    "TopicConfigurations",
    "QueueConfigurations",
    "LambdaFunctionConfigurations",
    "EventBridgeConfiguration",
)


@dataclass(frozen=True)
class QueueNotification:
    """One feed's notification: ObjectCreated events for keys under ``prefix`` to the queue ``queue_arn``.

    ``configuration_id`` names it in the bucket's configuration, so a later run finds and merges it.
    """

    configuration_id: str
    queue_arn: str
    prefix: str

    def as_configuration(self) -> dict[str, Any]:
        return {
            "Id": self.configuration_id,
            "QueueArn": self.queue_arn,
            "Events": list(CREATED_EVENTS),
            "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": self.prefix}]}},
        }


def ensure_event_notifications(
    s3_client: Any, *, bucket_name: str, notifications: Sequence[QueueNotification]
) -> ProvisionResult:
    """Merge the feeds' queue notifications into the bucket's configuration; no Put when nothing differs.

    S3's PutBucketNotificationConfiguration replaces the configuration as a whole, so the current one is read
    first and every configuration whose Id is not one of ours (someone else's topics, queues, functions,
    EventBridge) is sent back unchanged. Ours are matched by Id and replaced where they differ.
    """
    current = s3_client.get_bucket_notification_configuration(Bucket=bucket_name)
    configuration = {name: current[name] for name in _NOTIFICATION_SECTIONS if name in current}
    existing = {queue["Id"]: queue for queue in configuration.get("QueueConfigurations", []) if "Id" in queue}
    changes: list[str] = []
    # "created" when none of ours was there yet (a first provisioning), else "updated" with what differs.
    created = not any(notification.configuration_id in existing for notification in notifications)
    for notification in notifications:
        wanted = notification.as_configuration()
        had = existing.get(notification.configuration_id)
        if had is None:
            changes.append(f"{notification.configuration_id}: {notification.prefix} -> queue added")
        elif _comparable_notification(had) != _comparable_notification(wanted):
            changes.append(f"{notification.configuration_id}: {notification.prefix} -> queue updated")
    if not changes:
        return ProvisionResult.from_changes(NOTIFICATIONS_RESOURCE, bucket_name, created=False, changes=())
    ours = {notification.configuration_id for notification in notifications}
    configuration["QueueConfigurations"] = [
        queue for queue in configuration.get("QueueConfigurations", []) if queue.get("Id") not in ours
    ] + [notification.as_configuration() for notification in notifications]
    try:
        s3_client.put_bucket_notification_configuration(
            Bucket=bucket_name, NotificationConfiguration=configuration
        )
    except ClientError as err:
        if err.response.get("Error", {}).get("Code") != "InvalidArgument":
            raise
        raise ProvisioningError(
            f"S3 bucket {bucket_name}: its event notifications cannot take the feeds' ({'; '.join(changes)}): "
            f"{err.response['Error'].get('Message', err)}. Another notification of the bucket probably covers "
            "the same events under an overlapping prefix; narrow or remove it, or give the feed another "
            "landing_prefix"
        ) from err
    log.info("S3 bucket %s: event notifications set (%s)", bucket_name, "; ".join(changes))
    return ProvisionResult.from_changes(
        NOTIFICATIONS_RESOURCE, bucket_name, created=created, changes=() if created else changes
    )


def _comparable_notification(
    queue: Mapping[str, Any],
) -> tuple[str, tuple[str, ...], tuple[tuple[str, str], ...]]:
    """Queue, sorted events and filter rules (names in lower case: S3 answers ``Prefix`` or ``prefix``)."""
    rules = queue.get("Filter", {}).get("Key", {}).get("FilterRules", [])
    return (
        str(queue.get("QueueArn", "")),
        tuple(sorted(queue.get("Events", []))),
        tuple(sorted((str(rule["Name"]).lower(), str(rule["Value"])) for rule in rules)),
    )
