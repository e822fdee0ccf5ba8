"""What every activity here shares: heartbeating around slow work, and bad input refused as
the caller's fault rather than retried."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

import psycopg
from temporalio import activity
from temporalio.exceptions import ApplicationError, ApplicationErrorCategory

from memory.errors import InvalidInputError
from memory.store.db import archive_refusal

__all__ = ["HEARTBEAT_EVERY", "heartbeating", "misconfigured", "refused", "running_activity"]

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


def misconfigured(exc: psycopg.Error) -> ApplicationError | None:
    """A database error no retry mends (`memory.store.db.archive_refusal`), as an error that
    fails the call instead. Retried like an outage, an append waited ten minutes without a word
    while the worker logged a traceback for each attempt (an SRE's user test); refused, it
    names the cause, and the retry is the caller's, once it is mended."""
    said = archive_refusal(exc)
    if said is None:
        return None
    return ApplicationError(f"{said}; nothing of this call was stored", type="ArchiveMisconfigured",
                            non_retryable=True)


def running_activity() -> str:
    """This activity across its attempts (workflow run id / activity id): what tells its own
    recorded failures from an earlier activity's under the same record id."""
    info = activity.info()
    return f"{info.workflow_run_id}/{info.activity_id}"
