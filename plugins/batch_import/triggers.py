"""The trigger ``import_file`` defers to: the provider's ``BatchJobTrigger``, first poll delayed.

Subclassed for one reason: a trigger that fires within seconds of the deferral (a bad file fails its job at once)
lets the resumed try reach RUNNING before the scheduler has drained the executor's stale "success" of the
deferring process, and Airflow 3.3 then fails that try as "state changed externally" and retries it
(apache/airflow#71580, #72716; fixes proposed in PRs #71579, #72767, not released). Waiting
:data:`FIRST_POLL_DELAY_SECONDS` before the first ``DescribeJobs`` leaves the scheduler that time; the job's
outcome and everything after it are the provider's. Imports only provider modules: the triggerer loads it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from airflow.providers.amazon.aws.triggers.batch import BatchJobTrigger
from airflow.triggers.base import TriggerEvent

# Measured on the 2-core test machine: the deferring process's exit reached the scheduler 5-6 s after the
# deferral. Remove this subclass once the upstream fix is in the pinned Airflow.
FIRST_POLL_DELAY_SECONDS = 10.0


class ImportJobTrigger(BatchJobTrigger):
    """``BatchJobTrigger`` whose first poll waits ``first_poll_delay`` seconds (see the module docstring).

    :param first_poll_delay: seconds before the first poll (default :data:`FIRST_POLL_DELAY_SECONDS`)
    """

    def __init__(self, *, first_poll_delay: float = FIRST_POLL_DELAY_SECONDS, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.first_poll_delay = first_poll_delay

    def serialize(self) -> tuple[str, dict[str, Any]]:
        classpath, kwargs = super().serialize()
        return classpath, {**kwargs, "first_poll_delay": self.first_poll_delay}

    async def run(self) -> AsyncIterator[TriggerEvent]:
        await asyncio.sleep(self.first_poll_delay)
        async for event in super().run():
            yield event
