"""The feeds' SQS event queues and the bucket's notifications, provisioned against moto in-process.

Every AWS call is recorded (botocore ``before-call``), so "no mutating call on a second run" is checked on
the calls themselves. The whole provisioning DAG (these tasks included) is in test_provisioning.py and
tests/dags/test_provision_dag.py.
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import boto3
import pytest
from moto import mock_aws

from batch_import.config import load_config
from batch_import.provisioning import ProvisioningError
from batch_import.provisioning.account import AwsAccount, describe_account
from batch_import.provisioning.documents import normalise_policy
from batch_import.provisioning.s3 import QueueNotification, ensure_event_notifications
from batch_import.provisioning.sqs import ensure_event_queue, queue_arn

REGION = "us-east-1"
BUCKET = "landing-events-test"
READ_ONLY_PREFIXES = ("Describe", "List", "Get", "Head")
SHIPPED = load_config(environ={})


@dataclass
class Aws:
    s3: Any
    sqs: Any
    account: AwsAccount
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def mutating(self) -> list[str]:
        return [name for name, _ in self.calls if not name.startswith(READ_ONLY_PREFIXES)]


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[Aws]:
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    with mock_aws():
        s3 = boto3.client("s3", region_name=REGION)
        sqs = boto3.client("sqs", region_name=REGION)
        s3.create_bucket(Bucket=BUCKET)
        recorded = Aws(
            s3=s3, sqs=sqs, account=describe_account(boto3.client("sts", region_name=REGION), REGION)
        )

        def record(model: Any, params: dict[str, Any], **_: Any) -> None:
            recorded.calls.append((model.name, params))

        for client in (s3, sqs):
            client.meta.events.register("before-parameter-build", record)
        yield recorded


def provision_feeds(aws: Aws, feeds: Any = SHIPPED.feeds) -> dict[str, Any]:
    """Each feed's queue, then the bucket's notifications, as the provisioning DAG orders them."""
    results = {}
    for feed in feeds:
        results[feed.name] = ensure_event_queue(
            aws.sqs,
            aws.account,
            queue_name=feed.event_queue,
            dead_letter_queue_name=feed.event_dead_letter_queue,
            bucket_name=BUCKET,
            max_receive_count=SHIPPED.events.max_receive_count,
            dead_letter_retention_seconds=SHIPPED.events.dead_letter_retention_seconds,
        )
    results["event_notifications"] = ensure_event_notifications(
        aws.s3, bucket_name=BUCKET, notifications=notifications_of(aws, feeds)
    )
    return results


def notifications_of(aws: Aws, feeds: Any) -> list[QueueNotification]:
    return [
        QueueNotification(
            configuration_id=feed.event_queue,
            queue_arn=queue_arn(aws.account, feed.event_queue),
            prefix=feed.landing_prefix,
        )
        for feed in feeds
    ]


def queue_attributes(aws: Aws, name: str) -> dict[str, str]:
    url = aws.sqs.get_queue_url(QueueName=name)["QueueUrl"]
    return aws.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]


def queue_notifications(aws: Aws) -> dict[str, dict[str, Any]]:
    configuration = aws.s3.get_bucket_notification_configuration(Bucket=BUCKET)
    return {queue["Id"]: queue for queue in configuration.get("QueueConfigurations", [])}


def test_queues_and_notifications_twice_the_second_run_makes_no_mutating_call(aws: Aws) -> None:
    first = provision_feeds(aws)

    assert {name: result.action for name, result in first.items()} == {
        **{feed.name: "created" for feed in SHIPPED.feeds},
        "event_notifications": "created",
    }
    bucket_arn = f"arn:aws:s3:::{BUCKET}"
    configured = queue_notifications(aws)
    for feed in SHIPPED.feeds:
        attributes = queue_attributes(aws, feed.event_queue)
        redrive = json.loads(attributes["RedrivePolicy"])
        assert (
            redrive["deadLetterTargetArn"] == queue_attributes(aws, feed.event_dead_letter_queue)["QueueArn"]
        )
        assert int(redrive["maxReceiveCount"]) == SHIPPED.events.max_receive_count
        (statement,) = normalise_policy(attributes["Policy"])["Statement"]
        assert statement["Principal"] == {"Service": ["s3.amazonaws.com"]}
        assert statement["Action"] == ["sqs:SendMessage"]
        assert statement["Resource"] == [attributes["QueueArn"]]
        assert statement["Condition"] == {
            "ArnEquals": {"aws:SourceArn": [bucket_arn]},
            "StringEquals": {"aws:SourceAccount": [aws.account.account_id]},
        }
        notification = configured[feed.event_queue]
        assert notification["QueueArn"] == attributes["QueueArn"]
        assert notification["Events"] == ["s3:ObjectCreated:*"]
        (rule,) = notification["Filter"]["Key"]["FilterRules"]
        assert (rule["Name"].lower(), rule["Value"]) == ("prefix", feed.landing_prefix)
    aws.calls.clear()

    second = provision_feeds(aws)

    assert {result.action for result in second.values()} == {"unchanged"}
    assert aws.calls, "the second run must read every queue and the notifications"
    assert aws.mutating() == []


def test_someone_elses_notifications_survive_and_ours_are_updated_by_id(aws: Aws) -> None:
    sns = boto3.client("sns", region_name=REGION)
    topic = sns.create_topic(Name="someone-elses-topic")["TopicArn"]
    their_queue = aws.sqs.create_queue(QueueName="someone-elses-queue")["QueueUrl"]
    their_queue_arn = aws.sqs.get_queue_attributes(QueueUrl=their_queue, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    theirs = {
        "TopicConfigurations": [
            {"Id": "their-topic", "TopicArn": topic, "Events": ["s3:ObjectRemoved:*"]},
        ],
        "QueueConfigurations": [
            {
                "Id": "their-exports",
                "QueueArn": their_queue_arn,
                "Events": ["s3:ObjectCreated:*"],
                "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": "exports/"}]}},
            }
        ],
    }
    aws.s3.put_bucket_notification_configuration(Bucket=BUCKET, NotificationConfiguration=theirs)

    provision_feeds(aws)

    def their_configurations() -> tuple[Any, Any]:
        configuration = aws.s3.get_bucket_notification_configuration(Bucket=BUCKET)
        return configuration["TopicConfigurations"], queue_notifications(aws)["their-exports"]

    assert set(queue_notifications(aws)) == {"their-exports", *(feed.event_queue for feed in SHIPPED.feeds)}
    topics, exports = their_configurations()
    assert [(t["Id"], t["TopicArn"]) for t in topics] == [("their-topic", topic)]
    assert exports["QueueArn"] == their_queue_arn

    # Our notification drifted (someone pointed it elsewhere): only ours is put back, theirs stay.
    first = SHIPPED.feeds[0]
    drifted = aws.s3.get_bucket_notification_configuration(Bucket=BUCKET)
    drifted.pop("ResponseMetadata")
    for queue in drifted["QueueConfigurations"]:
        if queue["Id"] == first.event_queue:
            queue["Filter"] = {"Key": {"FilterRules": [{"Name": "prefix", "Value": "elsewhere/"}]}}
    aws.s3.put_bucket_notification_configuration(Bucket=BUCKET, NotificationConfiguration=drifted)
    aws.calls.clear()

    again = provision_feeds(aws)

    assert again["event_notifications"].action == "updated"
    assert again["event_notifications"].changes == (
        f"{first.event_queue}: {first.landing_prefix} -> queue updated",
    )
    assert aws.mutating() == ["PutBucketNotificationConfiguration"]
    (rule,) = queue_notifications(aws)[first.event_queue]["Filter"]["Key"]["FilterRules"]
    assert rule["Value"] == first.landing_prefix
    assert their_configurations() == (topics, exports)


def test_a_drifted_redrive_policy_is_put_back_alone(aws: Aws) -> None:
    provision_feeds(aws)
    first = SHIPPED.feeds[0]
    url = aws.sqs.get_queue_url(QueueName=first.event_queue)["QueueUrl"]
    dlq_arn = queue_attributes(aws, first.event_dead_letter_queue)["QueueArn"]
    policy = queue_attributes(aws, first.event_queue)["Policy"]
    drifted = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 99})
    # The Policy is sent along: moto clears it on a SetQueueAttributes without it (SQS does not).
    aws.sqs.set_queue_attributes(QueueUrl=url, Attributes={"RedrivePolicy": drifted, "Policy": policy})
    aws.calls.clear()

    results = provision_feeds(aws)

    assert results[first.name].action == "updated"
    assert results[first.name].changes == ("RedrivePolicy set",)
    assert aws.mutating() == ["SetQueueAttributes"]
    assert int(json.loads(queue_attributes(aws, first.event_queue)["RedrivePolicy"])["maxReceiveCount"]) == (
        SHIPPED.events.max_receive_count
    )
    aws.calls.clear()
    assert {result.action for result in provision_feeds(aws).values()} == {"unchanged"}
    assert aws.mutating() == []


def test_a_landed_file_reaches_only_its_feeds_queue(aws: Aws) -> None:
    provision_feeds(aws)
    first, second = SHIPPED.feeds[:2]

    aws.s3.put_object(Bucket=BUCKET, Key=f"{first.landing_prefix}2026-03-01/a b.csv", Body=b"id\n1\n")

    def bodies(feed: Any) -> list[dict[str, Any]]:
        url = aws.sqs.get_queue_url(QueueName=feed.event_queue)["QueueUrl"]
        answer = aws.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)
        return [json.loads(m["Body"]) for m in answer.get("Messages", [])]

    received = bodies(first)
    records = [record for body in received for record in body.get("Records", [])]
    (encoded,) = [record["s3"]["object"]["key"] for record in records]
    assert "+" in encoded, "S3 sends keys form-encoded (a space as +)"
    assert urllib.parse.unquote_plus(encoded) == f"{first.landing_prefix}2026-03-01/a b.csv"
    assert all("Records" not in body for body in bodies(second))


def test_an_overlapping_notification_of_someone_else_fails_clearly_and_is_kept() -> None:
    """S3 refuses two configurations for the same events under overlapping prefixes (moto does not check)."""
    from botocore.stub import Stubber

    s3 = boto3.client("s3", region_name=REGION)
    theirs = {
        "QueueConfigurations": [
            {
                "Id": "theirs",
                "QueueArn": "arn:aws:sqs:us-east-1:123456789012:q",
                "Events": ["s3:ObjectCreated:*"],
            }
        ]
    }
    ours = QueueNotification(
        configuration_id="csv-import-events-orders",
        queue_arn="arn:aws:sqs:us-east-1:123456789012:csv-import-events-orders",
        prefix="incoming/orders/",
    )
    with Stubber(s3) as stubber:
        stubber.add_response("get_bucket_notification_configuration", theirs, {"Bucket": BUCKET})
        stubber.add_client_error(
            "put_bucket_notification_configuration",
            service_error_code="InvalidArgument",
            service_message="Configurations overlap. Configurations on the same bucket cannot share a common "
            "event type.",
            expected_params={
                "Bucket": BUCKET,
                "NotificationConfiguration": {
                    "QueueConfigurations": [*theirs["QueueConfigurations"], ours.as_configuration()]
                },
            },
        )
        with pytest.raises(ProvisioningError, match="Configurations overlap.*overlapping prefix"):
            ensure_event_notifications(s3, bucket_name=BUCKET, notifications=[ours])
