"""The feed's landing-events trigger: serialised without a URL, the URL asked for by name in the triggerer."""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager
from typing import Any

import pytest
from botocore.exceptions import ClientError

from batch_import.event_trigger import LandingEventsTrigger

QUEUE_URL = "http://127.0.0.1:5000/123456789012/csv-import-events-orders"


class FakeSqs:
    """The async SQS client calls the trigger makes: GetQueueUrl (missing at first), one receive, one delete."""

    def __init__(self, missing_answers: int) -> None:
        self.missing_answers = missing_answers
        self.calls: list[tuple[str, dict[str, Any]]] = []

    async def get_queue_url(self, **kwargs: Any) -> dict[str, str]:
        self.calls.append(("GetQueueUrl", kwargs))
        if self.missing_answers:
            self.missing_answers -= 1
            raise ClientError({"Error": {"Code": "AWS.SimpleQueueService.NonExistentQueue"}}, "GetQueueUrl")
        return {"QueueUrl": QUEUE_URL}

    async def receive_message(self, **kwargs: Any) -> dict[str, Any]:
        self.calls.append(("ReceiveMessage", kwargs))
        return {"Messages": [{"MessageId": "m", "ReceiptHandle": "r", "Body": "{}"}]}

    async def delete_message_batch(self, **kwargs: Any) -> dict[str, Any]:
        self.calls.append(("DeleteMessageBatch", kwargs))
        return {"Successful": [{"Id": "m"}]}


def trigger() -> LandingEventsTrigger:
    return LandingEventsTrigger(
        queue_name="csv-import-events-orders", wait_time_seconds=20, waiter_delay=0, max_messages=10
    )


def test_it_serialises_the_queue_name_and_no_url() -> None:
    classpath, kwargs = trigger().serialize()

    assert classpath == "batch_import.event_trigger.LandingEventsTrigger"
    assert "sqs_queue" not in kwargs
    assert kwargs["queue_name"] == "csv-import-events-orders"
    # The triggerer builds it again from exactly this.
    assert LandingEventsTrigger(**kwargs).serialize() == (classpath, kwargs)


def test_it_finds_its_queue_by_name_waiting_until_it_exists(monkeypatch: pytest.MonkeyPatch) -> None:
    sqs = FakeSqs(missing_answers=2)
    sleeps: list[float] = []

    @asynccontextmanager
    async def connection() -> Any:
        yield sqs

    class Hook:
        async def get_async_conn(self) -> Any:
            return connection()

    async def no_sleep(seconds: float) -> None:
        sleeps.append(seconds)

    monkeypatch.setattr(LandingEventsTrigger, "hook", property(lambda self: Hook()))
    monkeypatch.setattr(asyncio, "sleep", no_sleep)

    async def first_event() -> Any:
        async for event in trigger().run():
            return event

    event = asyncio.run(first_event())

    assert event.payload["status"] == "success"
    assert [name for name, _ in sqs.calls] == [
        "GetQueueUrl",
        "GetQueueUrl",
        "GetQueueUrl",
        "ReceiveMessage",
        "DeleteMessageBatch",
    ]
    assert sleeps == [1, 1], "a missing queue is asked for again, at least a second later"
    receive = dict(sqs.calls)["ReceiveMessage"]
    assert (receive["QueueUrl"], receive["WaitTimeSeconds"], receive["MaxNumberOfMessages"]) == (
        QUEUE_URL,
        20,
        10,
    )
