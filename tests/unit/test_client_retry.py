"""Which update errors the client retries with the same update id (`longthread.client`)."""

from __future__ import annotations

import pytest
from temporalio.service import RPCError, RPCStatusCode

from longthread.replies import transient


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
