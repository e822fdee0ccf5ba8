"""ConversationWorkflow: one durable workflow per (tenant, session).

Orchestration only: appended messages arrive by update, are validated before anything reaches
history, and are kept in workflow state. The engine (memory/) is pure and runs in the sandbox.
"""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from memory.errors import InvalidInputError
    from memory.models import Message, validate_sequence
    from workflows.types import AppendInput, AppendResult, ConversationInput, ConversationStats

__all__ = ["ConversationWorkflow", "workflow_id"]


def workflow_id(tenant: str, session: str) -> str:
    """`conversation-{tenant}-{session}`; tenants contain no '-', so ids never collide."""
    return f"conversation-{tenant}-{session}"


@workflow.defn
class ConversationWorkflow:
    @workflow.init
    def __init__(self, input: ConversationInput) -> None:
        self._input = input
        self._messages: list[Message] = []
        self._ids: set[str] = set()
        self._closed = False

    @workflow.run
    async def run(self, input: ConversationInput) -> ConversationStats:
        await workflow.wait_condition(lambda: self._closed)
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self.stats()

    @workflow.update
    def attach(self) -> ConversationStats:
        """A no-op update that update-with-start pairs with, to start or attach a session."""
        return self.stats()

    @workflow.update
    async def append_many(self, input: AppendInput) -> AppendResult:
        fresh = [m for m in input.messages if m.id not in self._ids]
        self._messages.extend(fresh)
        self._ids.update(m.id for m in fresh)
        return AppendResult(appended=len(fresh), duplicates=len(input.messages) - len(fresh),
                            total=len(self._messages))

    @append_many.validator
    def _validate_append(self, input: AppendInput) -> None:
        if self._closed:
            raise InvalidInputError("session", "is closed")
        fresh = [m for m in input.messages if m.id not in self._ids]
        validate_sequence(fresh, open_tool_calls=(
            c.id for m in self._messages for c in m.tool_calls))

    @workflow.query
    def messages(self) -> list[Message]:
        return list(self._messages)

    @workflow.query
    def stats(self) -> ConversationStats:
        return ConversationStats(tenant=self._input.tenant, session=self._input.session,
                                 messages=len(self._messages))

    @workflow.signal
    def close(self) -> None:
        self._closed = True
