"""What every activity here shares: heartbeating around slow work, and bad input refused as
the caller's fault rather than retried."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

from temporalio import activity
from temporalio.exceptions import ApplicationError, ApplicationErrorCategory

from memory.errors import InvalidInputError

__all__ = ["HEARTBEAT_EVERY", "heartbeating", "refused", "running_activity"]

HEARTBEAT_EVERY = 5.0  # seconds; the heartbeat timeouts in activities/specs.py are 3x this

T = TypeVar("T")


async def heartbeating(work: Awaitable[T]) -> T:
    """Await slow work (a provider call) while heartbeating, so that if this worker dies the
    activity is retried elsewhere after the heartbeat timeout, not the whole start-to-close.
    If the activity is cancelled, the work is cancelled with it."""
    task = asyncio.ensure_future(work)
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=HEARTBEAT_EVERY)
            if done:
                return task.result()
            activity.heartbeat()
    finally:
        task.cancel()


def refused(exc: InvalidInputError) -> ApplicationError:
    """The caller's bad input, not the worker's fault: BENIGN keeps it out of the worker's
    warnings (the SDK logs it at DEBUG, without a traceback) and its failure metrics."""
    return ApplicationError(str(exc), type="InvalidInputError", non_retryable=True,
                            category=ApplicationErrorCategory.BENIGN)


def running_activity() -> str:
    """This activity across its attempts (workflow run id / activity id): what tells its own
    recorded failures from an earlier activity's under the same record id."""
    info = activity.info()
    return f"{info.workflow_run_id}/{info.activity_id}"
