"""Which update errors the client retries with the same update id (`longthread.client`)."""

from __future__ import annotations

import asyncio

import pytest
from temporalio.client import WorkflowUpdateRPCTimeoutOrCancelledError
from temporalio.service import RPCError, RPCStatusCode

from longthread.replies import never_accepted, transient, undelivered


@pytest.mark.parametrize(("status", "message", "retried"), [
    # The workflow task carrying the update failed before accepting it (the server retries
    # that task), e.g. a worker died mid-task.
    (RPCStatusCode.FAILED_PRECONDITION,
     "Unable to perform workflow execution update due to unexpected workflow task failure.",
     True),
    (RPCStatusCode.FAILED_PRECONDITION,
     "Unable to perform workflow execution update due to Workflow Task in failed state.", True),
    (RPCStatusCode.UNAVAILABLE, "connection refused", True),
    (RPCStatusCode.UNKNOWN, "transport error", True),  # the connection broke mid-call
    (RPCStatusCode.CANCELLED, "transport error", True),
    (RPCStatusCode.FAILED_PRECONDITION, "no poller seen for task queue recently", True),
    (RPCStatusCode.INVALID_ARGUMENT, "Workflow history size exceeds limit.", False),
    (RPCStatusCode.FAILED_PRECONDITION, "workflow execution already completed", False),
])
def test_transient_update_errors(status: RPCStatusCode, message: str, retried: bool) -> None:
    assert transient(RPCError(message, status, b"")) is retried


def _wrapped(cause: BaseException) -> WorkflowUpdateRPCTimeoutOrCancelledError:
    error = WorkflowUpdateRPCTimeoutOrCancelledError()
    error.__cause__ = cause
    return error


DEADLINE = RPCError("context deadline exceeded", RPCStatusCode.DEADLINE_EXCEEDED, b"")
NO_POLLER = RPCError("no poller seen for task queue recently", RPCStatusCode.FAILED_PRECONDITION,
                     b"")


@pytest.mark.parametrize(("error", "resendable", "proved_unaccepted"), [
    (_wrapped(DEADLINE), True, False),  # the server's deadline, as the SDK reports it
    (_wrapped(asyncio.CancelledError()), False, False),  # the caller's own cancellation
    (RPCError("unavailable", RPCStatusCode.UNAVAILABLE, b""), True, False),  # maybe after
    (NO_POLLER, True, True),
    (RPCError("Workflow history size exceeds limit.", RPCStatusCode.INVALID_ARGUMENT, b""),
     False, False),
])
def test_which_unanswered_updates_may_be_sent_again(error: BaseException, resendable: bool,
                                                    proved_unaccepted: bool) -> None:
    """`undelivered`: worth sending again when idempotent; `never_accepted`: safe for any."""
    assert (undelivered(error) is not None) is resendable
    assert never_accepted(error) is proved_unaccepted


class _BrokenClient:
    """Temporal's connection breaks while every update waits (an SRE's user test)."""

    def __init__(self) -> None:
        self.calls = 0

    async def execute_update_with_start_workflow(self, *args: object, **kwargs: object) -> None:
        self.calls += 1
        raise RPCError("transport error", RPCStatusCode.UNKNOWN, b"")


@pytest.mark.parametrize("idempotent", [True, False])
async def test_a_broken_connection_says_the_update_may_have_run(idempotent: bool) -> None:
    """An append is sent again until the client's retry time runs out; a compaction is not
    (it may have run, and may not run twice). Either way the error says so, and what is safe,
    where a bare `RPCError: transport error` reached the caller of an append that was stored."""
    from types import SimpleNamespace

    from longthread.conversation import Conversation
    from memory.errors import LongthreadError
    from memory.policy import CompactionPolicy

    client = _BrokenClient()
    lt = SimpleNamespace(client=client, policy=CompactionPolicy(), task_queue="q",
                         settings=SimpleNamespace(client_retry_seconds=0.3,
                                                  idle_timeout_seconds=60))
    conversation = Conversation(lt, "s", "t")  # type: ignore[arg-type]

    async def append_many() -> None: ...

    with pytest.raises(LongthreadError, match=r"append_many: Temporal gave no answer in time "
                                              r"\(transport error\); it may have been applied"):
        await conversation._update(append_many, idempotent=idempotent)
    assert (client.calls > 1) is idempotent
