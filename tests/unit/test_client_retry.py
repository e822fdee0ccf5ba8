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
