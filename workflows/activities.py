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

with workflow.unsafe.imports_passed_through():
    from pydantic import BaseModel

    from activities.specs import ActivitySpec

__all__ = ["OUTAGE_RETRY", "call"]

R = TypeVar("R")

OUTAGE_RETRY = RetryPolicy(initial_interval=timedelta(milliseconds=200), backoff_coefficient=2.0,
                           maximum_interval=timedelta(seconds=10))


async def call(spec: ActivitySpec[R], arg: BaseModel) -> R:
    retry = OUTAGE_RETRY
    if spec.max_attempts:
        retry = RetryPolicy(initial_interval=timedelta(seconds=1), backoff_coefficient=2.0,
                            maximum_interval=timedelta(seconds=10),
                            maximum_attempts=spec.max_attempts)
    if spec.local:
        result: R = await workflow.execute_local_activity(
            spec.name, arg, result_type=spec.result, start_to_close_timeout=spec.timeout,
            retry_policy=retry)
        return result
    result = await workflow.execute_activity(
        spec.name, arg, result_type=spec.result, start_to_close_timeout=spec.timeout,
        heartbeat_timeout=spec.heartbeat, retry_policy=retry)
    return result
