"""What the session workflow's updates answer, as the client reports it: a manual compaction's
outcome in words, and a refused or failed update turned back into the error behind it."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from temporalio.client import (
    RPCError,
    WorkflowExecutionDescription,
    WorkflowHandle,
    WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
)
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCStatusCode

from memory.errors import InvalidInputError, LongthreadError, SessionErasedError
from memory.models import CompactionRecord

__all__ = ["CompactAttempt", "closing", "described", "in_whole_ledger", "never_accepted",
           "raise_clear", "transient", "undelivered"]


@dataclass(frozen=True)
class CompactAttempt:
    """What a manual compact did: the record it committed, or none and, when one was composed
    but would not have shrunk the window, why (the session's events hold a `skipped` entry)."""

    record: CompactionRecord | None
    skipped: str | None = None

    def nothing_because(self, preserve_recent: int | None,
                        option: str = "preserve_recent") -> str:
        """Why no record was committed, in words for a person or a model; `option` is how
        the caller's interface spells preserve_recent."""
        if self.record is not None:  # asked anyway: say what was done, not "nothing"
            return f"compacted: {self.record.id} ({len(self.record.covered_ids)} messages)"
        if self.skipped:
            return f"nothing compacted: {self.skipped}"
        if preserve_recent is not None:
            return (f"nothing to compact: the window holds nothing older than its "
                    f"{preserve_recent} most recent messages ({option}) besides system and "
                    "pinned ones")
        return ("nothing to compact: the window holds nothing older than the recent messages "
                "the policy keeps verbatim (LONGTHREAD_PRESERVE_RECENT) besides system and "
                f"pinned ones; {option} N keeps fewer")


def transient(exc: RPCError) -> bool:
    """Worth retrying with the same update id: the server is unreachable or busy, no worker
    polls, or the workflow task that carried the update failed before accepting it (the
    server retries that task; a worker died mid-task, say). The update was not accepted; a
    batch its local activity had stored already comes back as duplicates. So is a connection
    that broke while the call waited ("transport error", whatever its status): an append's
    batch was stored and its caller told it failed (an SRE's user test, Temporal killed while
    an append waited)."""
    return (exc.status in (RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED,
                           RPCStatusCode.RESOURCE_EXHAUSTED)
            or "transport error" in exc.message.lower()
            or "no poller" in exc.message
            or (exc.status == RPCStatusCode.FAILED_PRECONDITION
                and "workflow task" in exc.message.lower()))


def never_accepted(exc: BaseException) -> bool:
    """A refusal that proves the server did not accept the update: no worker polls, or the
    workflow task carrying it failed first. Anything else (the server unreachable, its deadline)
    may come after acceptance, while the SDK waits for the outcome."""
    return isinstance(exc, RPCError) and (
        "no poller" in exc.message
        or (exc.status == RPCStatusCode.FAILED_PRECONDITION
            and "workflow task" in exc.message.lower()))


def undelivered(exc: BaseException) -> RPCError | None:
    """The failure behind an update call that got no answer, when it is worth sending again
    with the same update id; else None. The SDK reports the server's own deadline ("context
    deadline exceeded": under load the update was not accepted or finished in time, and may
    still be) as WorkflowUpdateRPCTimeoutOrCancelledError, the class it also raises for the
    caller's own cancellation, which is not retried. A platform engineer's load test saw 24
    of 200 sessions fail so, 10 of them with the batch stored."""
    cause = exc.__cause__ if isinstance(exc, WorkflowUpdateRPCTimeoutOrCancelledError) else exc
    return cause if isinstance(cause, RPCError) and transient(cause) else None


def _raised(exc: WorkflowUpdateFailedError) -> BaseException | None:
    """The ApplicationError the workflow or its activity raised, else the first cause."""
    cause: BaseException | None = exc.cause
    while cause is not None and not isinstance(cause, ApplicationError):
        cause = cause.__cause__
    return cause


def closing(exc: WorkflowUpdateFailedError) -> bool:
    """The update was refused because its run is closing (idle), not for its input."""
    cause = _raised(exc)
    return (isinstance(cause, ApplicationError) and cause.type == "InvalidInputError"
            and cause.message == "session: is closed")


def raise_clear(exc: WorkflowUpdateFailedError) -> None:
    """Turn a refused update back into the error the workflow or its activity raised."""
    cause = _raised(exc)
    if isinstance(cause, ApplicationError) and cause.type == "InvalidInputError":
        field, _, problem = cause.message.partition(": ")
        if field == "session" and (erased := SessionErasedError.relayed(problem)) is not None:
            raise erased from None
        raise InvalidInputError(field, problem) from None
    raise LongthreadError(str(cause or exc)) from exc


def in_whole_ledger(exc: InvalidInputError, start: int) -> InvalidInputError:
    """An error about `records[i]` of a part that starts at record `start` of the ledger."""
    found = re.match(r"records\[(\d+)\](.*)", exc.field, re.S)
    if not found or not start:
        return exc
    return InvalidInputError(f"records[{int(found[1]) + start}]{found[2]}", exc.problem)


async def described(handle: WorkflowHandle[Any, Any]) -> WorkflowExecutionDescription | None:
    """The workflow's latest run as Temporal describes it, or None when Temporal knows no run
    of it (never started, or deleted: its session may still be in the archive)."""
    try:
        return await handle.describe()
    except RPCError as exc:
        if exc.status != RPCStatusCode.NOT_FOUND:
            raise
        return None
