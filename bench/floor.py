"""The floor under `append_many`: the least a workflow-orchestrated append can cost here.

A sandboxed workflow whose update does one thing: run the store's append transaction in a
local activity and return its count. No parsing beyond the payload, no cursors, no embedding
or compaction scheduled. `bench.append` samples it beside the no-op update and the real
`append_many`, so the report can say how much of the append's cost is the workflow's own work
and how much any design that stores the batch before the update returns must pay.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from temporalio import workflow

__all__ = ["FLOOR_ACTIVITY", "FloorWorkflow"]

FLOOR_ACTIVITY = "bench_floor_store"


@workflow.defn
class FloorWorkflow:
    def __init__(self) -> None:
        self.done = False

    @workflow.run
    async def run(self) -> None:
        await workflow.wait_condition(lambda: self.done)

    @workflow.update
    async def store(self, messages: list[dict[str, Any]]) -> int:
        stored: int = await workflow.execute_local_activity(
            FLOOR_ACTIVITY, messages, result_type=int,
            start_to_close_timeout=timedelta(seconds=20))
        return stored

    @workflow.signal
    def stop(self) -> None:
        self.done = True
