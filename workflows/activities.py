"""How the workflow calls an activity: by the spec in activities/specs.py, with one retry policy.

Retries are unbounded with capped backoff for outages (a database gone for a minute, a
provider returning 429/5xx); non-retryable errors (bad input, a ledger conflict) fail fast.
A spec may bound its attempts (the chat model) so an outage fails the call, not the session.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.workflow import ActivityCancellationType, ActivityHandle

with workflow.unsafe.imports_passed_through():
    from pydantic import BaseModel

    from activities.specs import ActivitySpec

__all__ = ["OUTAGE_RETRY", "call", "start"]

R = TypeVar("R")

OUTAGE_RETRY = RetryPolicy(initial_interval=timedelta(milliseconds=200), backoff_coefficient=2.0,
                           maximum_interval=timedelta(seconds=10))


def _retry(spec: ActivitySpec[R]) -> RetryPolicy:
    if not spec.max_attempts:
        return OUTAGE_RETRY
    return RetryPolicy(initial_interval=timedelta(seconds=1), backoff_coefficient=2.0,
                       maximum_interval=timedelta(seconds=10), maximum_attempts=spec.max_attempts)


def start(spec: ActivitySpec[R], arg: BaseModel) -> ActivityHandle[R]:
    """Schedule a (non-local) activity and return its handle, which the caller may cancel."""
    if spec.local:
        raise ValueError(f"{spec.name} is a local activity: use call()")
    cancellation = (ActivityCancellationType.WAIT_CANCELLATION_COMPLETED if spec.cancellable
                    else ActivityCancellationType.TRY_CANCEL)
    return workflow.start_activity(
        spec.name, arg, result_type=spec.result, start_to_close_timeout=spec.timeout,
        heartbeat_timeout=spec.heartbeat, retry_policy=_retry(spec),
        cancellation_type=cancellation)


async def call(spec: ActivitySpec[R], arg: BaseModel) -> R:
    if spec.local:
        result: R = await workflow.execute_local_activity(
            spec.name, arg, result_type=spec.result, start_to_close_timeout=spec.timeout,
            retry_policy=_retry(spec))
        return result
    return await start(spec, arg)
