"""Bounded polling for resources boto3 has no waiter for (Batch compute environments, queues, GSIs)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")


def poll_until(
    describe: Callable[[], T],
    is_ready: Callable[[T], bool],
    *,
    what: str,
    timeout_seconds: float,
    poll_seconds: float,
) -> T:
    """Call ``describe`` until ``is_ready`` says so; ``TimeoutError`` naming ``what`` after the bound.

    ``is_ready`` may raise to stop early (e.g. a compute environment turned INVALID).
    """
    deadline = time.monotonic() + timeout_seconds
    while True:
        state = describe()
        if is_ready(state):
            return state
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{what} was not ready after {timeout_seconds:g} s; last state: {state!r}")
        log.info("Waiting for %s; current state: %s", what, state)
        time.sleep(poll_seconds)
