"""What Temporal recorded for a workflow: each run's history size, status and the input it
handed to continue-as-new (read from the `WorkflowExecutionContinuedAsNew` event, as
tests/workflows/test_history_safety.py::continue_as_new_inputs does)."""

from __future__ import annotations

import json
from dataclasses import dataclass

from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowExecutionStatus

__all__ = ["EVENT_LIMIT", "HISTORY_BYTES_LIMIT", "PAYLOAD_LIMIT", "RunHistory", "runs"]

EVENT_LIMIT = 51_200  # Temporal terminates a run past these (defaults of the server)
HISTORY_BYTES_LIMIT = 50 * 1024 * 1024
PAYLOAD_LIMIT = 2 * 1024 * 1024


@dataclass
class RunHistory:
    run_id: str
    status: str
    events: int
    bytes: int
    continued_input: int | None  # bytes handed to continue-as-new, when the run did
    continued_at: int | None  # the next_seq (messages stored) recorded in that input
    task_failures: int  # workflow task failures (a stuck run fails its task on every retry)
    updates: int
    start: float  # the run's start time, to order runs
    # The activity that ran longest in the run (name, seconds from scheduled to closed): a
    # run that grows large is one that waited on something while appends kept landing.
    longest_activity: tuple[str, float] | None = None
    ended: str | None = None  # how a run that failed, timed out or was terminated ended, and why


async def runs(client: Client, workflow_id: str) -> list[RunHistory]:
    """Every run of `workflow_id`, oldest first."""
    out = []
    async for execution in client.list_workflows(f'WorkflowId = "{workflow_id}"'):
        handle = client.get_workflow_handle(workflow_id, run_id=execution.run_id)
        events = size = failures = updates = 0
        continued: int | None = None
        next_seq: int | None = None
        scheduled: dict[int, tuple[str, float]] = {}
        longest: tuple[str, float] | None = None
        ended: str | None = None
        async for event in handle.fetch_history_events():
            events += 1
            size += event.ByteSize()
            if event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED:
                failures += 1
            elif event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED:
                updates += 1
            kind = event.WhichOneof("attributes")
            if kind is None:
                continue
            attrs = getattr(event, kind)
            when = event.event_time.ToDatetime().timestamp()
            if kind == "activity_task_scheduled_event_attributes":
                scheduled[event.event_id] = (attrs.activity_type.name, when)
            elif kind in _CLOSING and attrs.scheduled_event_id in scheduled:
                name, began = scheduled.pop(attrs.scheduled_event_id)
                if longest is None or when - began > longest[1]:
                    longest = (name, when - began)
            elif kind in _ENDED:
                failure = attrs.failure if attrs.HasField("failure") else None
                ended = kind.removesuffix("_event_attributes").removeprefix(
                    "workflow_execution_") + (f": {failure.message}" if failure else "") + (
                    f" (cause: {failure.cause.message})"
                    if failure and failure.HasField("cause") else "")
            elif kind == "workflow_execution_continued_as_new_event_attributes":
                payloads = attrs.input.payloads
                continued = sum(p.ByteSize() for p in payloads)
                try:
                    state = json.loads(payloads[0].data).get("state") or {}
                    next_seq = int(state["next_seq"])
                except (ValueError, TypeError, IndexError, KeyError):
                    next_seq = None
        status = execution.status or WorkflowExecutionStatus.RUNNING
        out.append(RunHistory(execution.run_id, status.name, events, size, continued, next_seq,
                              failures, updates, execution.start_time.timestamp(), longest,
                              ended))
    return sorted(out, key=lambda r: r.start)


_ENDED = ("workflow_execution_failed_event_attributes",
          "workflow_execution_timed_out_event_attributes",
          "workflow_execution_terminated_event_attributes",
          "workflow_execution_canceled_event_attributes")
_CLOSING = ("activity_task_completed_event_attributes", "activity_task_failed_event_attributes",
            "activity_task_timed_out_event_attributes", "activity_task_canceled_event_attributes")

