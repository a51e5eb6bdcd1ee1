"""The trigger a feed's AssetWatcher runs in the triggerer: its SQS queue of S3 landing events, found by name."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from airflow.providers.amazon.aws.triggers.sqs import SqsSensorTrigger
from airflow.triggers.base import TriggerEvent
from botocore.exceptions import ClientError

from batch_import.provisioning.sqs import MISSING_QUEUE_CODES


class LandingEventsTrigger(SqsSensorTrigger):
    """``SqsSensorTrigger`` (what ``MessageQueueTrigger(scheme="sqs")`` runs) that resolves its queue by name.

    Subclassed because a queue URL holds the account id and the endpoint, which the config does not carry and
    the DAG file must not look up at parse time: the URL is asked for (GetQueueUrl) here, in the triggerer.
    Until provisioning has created the queue, it says so and asks again after ``waiter_delay``.

    :param queue_name: the feed's queue (config ``events.queue`` / the feed's ``event_queue``)
    :param kwargs: the parent's, except ``sqs_queue``
    """

    def __init__(self, *, queue_name: str, **kwargs: Any) -> None:
        super().__init__(sqs_queue="", **kwargs)
        self.queue_name = queue_name

    def serialize(self) -> tuple[str, dict[str, Any]]:
        classpath, kwargs = super().serialize()
        kwargs.pop("sqs_queue", None)
        return classpath, {**kwargs, "queue_name": self.queue_name}

    async def run(self) -> AsyncIterator[TriggerEvent]:
        while not self.sqs_queue:
            async with await self.hook.get_async_conn() as client:
                try:
                    answer = await client.get_queue_url(QueueName=self.queue_name)
                except ClientError as err:
                    if err.response.get("Error", {}).get("Code") not in MISSING_QUEUE_CODES:
                        raise
                    pause = max(self.waiter_delay, 1)
                    self.log.warning(
                        "SQS queue %s does not exist yet (run provision_batch_environment); asking again in %d s",
                        self.queue_name,
                        pause,
                    )
                    await asyncio.sleep(pause)
                    continue
            self.sqs_queue = answer["QueueUrl"]
        async for event in super().run():
            yield event
