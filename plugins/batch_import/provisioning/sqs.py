"""A feed's SQS event queue: its dead-letter queue, the redrive policy, and a policy admitting only the bucket.

The queue receives the landing bucket's ``s3:ObjectCreated:*`` notifications for the feed's landing prefix
(:func:`batch_import.provisioning.s3.ensure_event_notifications`); the feed's import DAG watches it. Only
S3, on behalf of this bucket (``aws:SourceArn``) in the account that owns it (``aws:SourceAccount``), may
send to it. Never deleted.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from botocore.exceptions import ClientError

from batch_import.provisioning.account import AwsAccount
from batch_import.provisioning.documents import normalise_policy, policy_json
from batch_import.provisioning.outcome import ProvisionResult

log = logging.getLogger(__name__)

RESOURCE = "event_queue"
S3_SERVICE_PRINCIPAL = "s3.amazonaws.com"
MISSING_QUEUE_CODES = ("AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist")


def bucket_arn(account: AwsAccount, bucket_name: str) -> str:
    """``arn:<partition>:s3:::<bucket>``: bucket ARNs carry neither region nor account."""
    return account.arn("s3", bucket_name, regional=False, in_account=False)


def queue_arn(account: AwsAccount, queue_name: str) -> str:
    return account.arn("sqs", queue_name)


def queue_policy(account: AwsAccount, *, queue_name: str, bucket_name: str) -> dict[str, Any]:
    """SendMessage for S3 only, on behalf of this bucket in this account."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "LandingBucketNotifications",
                "Effect": "Allow",
                "Principal": {"Service": S3_SERVICE_PRINCIPAL},
                "Action": "sqs:SendMessage",
                "Resource": queue_arn(account, queue_name),
                "Condition": {
                    "ArnEquals": {"aws:SourceArn": bucket_arn(account, bucket_name)},
                    "StringEquals": {"aws:SourceAccount": account.account_id},
                },
            }
        ],
    }


def ensure_event_queue(
    sqs_client: Any,
    account: AwsAccount,
    *,
    queue_name: str,
    dead_letter_queue_name: str,
    bucket_name: str,
    max_receive_count: int,
    dead_letter_retention_seconds: int,
) -> ProvisionResult:
    """The dead-letter queue, then the queue with its redrive policy and queue policy; only what differs is set."""
    created_dlq, dlq_changes = _ensure_queue(
        sqs_client,
        dead_letter_queue_name,
        {"MessageRetentionPeriod": str(dead_letter_retention_seconds)},
    )
    wanted = {
        "RedrivePolicy": json.dumps(
            {
                "deadLetterTargetArn": queue_arn(account, dead_letter_queue_name),
                "maxReceiveCount": max_receive_count,
            },
            sort_keys=True,
        ),
        "Policy": policy_json(queue_policy(account, queue_name=queue_name, bucket_name=bucket_name)),
    }
    created, changes = _ensure_queue(sqs_client, queue_name, wanted)
    if created_dlq:
        changes.insert(0, f"dead-letter queue {dead_letter_queue_name} created")
    changes.extend(f"dead-letter queue {change}" for change in dlq_changes)
    return ProvisionResult.from_changes(
        RESOURCE, queue_name, created=created, changes=changes, arn=queue_arn(account, queue_name)
    )


def _ensure_queue(sqs_client: Any, queue_name: str, wanted: dict[str, str]) -> tuple[bool, list[str]]:
    """``(created, changes)``: create the queue with ``wanted``, or set those of its attributes that differ."""
    queue_url = _queue_url(sqs_client, queue_name)
    if queue_url is None:
        sqs_client.create_queue(QueueName=queue_name, Attributes=wanted)
        log.info("SQS queue %s created", queue_name)
        return True, []
    current = sqs_client.get_queue_attributes(QueueUrl=queue_url, AttributeNames=list(wanted))
    attributes = current.get("Attributes", {})
    differing = {
        name: value
        for name, value in wanted.items()
        if _comparable(name, attributes.get(name)) != _comparable(name, value)
    }
    if differing:
        # All wanted attributes in one call, not only those that differ: equal values change nothing in SQS,
        # and moto 5.2.5 (the local endpoint) clears a queue's Policy on any SetQueueAttributes without it.
        sqs_client.set_queue_attributes(QueueUrl=queue_url, Attributes=wanted)
        log.info("SQS queue %s: set %s", queue_name, ", ".join(sorted(differing)))
    return False, [f"{name} set" for name in sorted(differing)]


def _queue_url(sqs_client: Any, queue_name: str) -> str | None:
    try:
        return sqs_client.get_queue_url(QueueName=queue_name)["QueueUrl"]
    except ClientError as err:
        if err.response.get("Error", {}).get("Code") in MISSING_QUEUE_CODES:
            return None
        raise


def _comparable(name: str, value: str | None) -> Any:
    """Attribute values as meaning: policies normalised, the redrive policy parsed (SQS may quote the count)."""
    if value is None or value == "":
        return None
    if name == "Policy":
        return normalise_policy(value)
    if name == "RedrivePolicy":
        redrive = json.loads(value)
        return (redrive.get("deadLetterTargetArn"), int(redrive.get("maxReceiveCount", 0)))
    return str(value)
