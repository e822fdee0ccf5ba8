"""The public async client: `Longthread.connect()` and `Conversation`.

Every call goes through the conversation's workflow; update-with-start means the first call
on a session creates it and every later call attaches to the same durable workflow.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from temporalio.client import (
    Client,
    WithStartWorkflowOperation,
    WorkflowHandle,
    WorkflowUpdateFailedError,
)
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.exceptions import ApplicationError

from memory.errors import InvalidInputError, LongthreadError
from memory.models import Message, parse_messages
from worker.main import connect_client
from worker.settings import Settings
from workflows.conversation import ConversationWorkflow, workflow_id
from workflows.types import (
    SESSION_PATTERN,
    TENANT_PATTERN,
    AppendInput,
    AppendResult,
    ConversationInput,
    ConversationStats,
)

__all__ = ["Conversation", "Longthread"]


def check_ids(tenant: str, session: str) -> tuple[str, str]:
    if not re.match(TENANT_PATTERN, tenant):
        raise InvalidInputError("tenant", "must be 1-100 of A-Z a-z 0-9 _ . @ : (no '-')")
    if not re.match(SESSION_PATTERN, session):
        raise InvalidInputError("session", "must be 1-200 of A-Z a-z 0-9 _ . @ : -")
    return tenant, session


def _raise_clear(exc: WorkflowUpdateFailedError) -> None:
    """Turn a rejected update back into the error the validator raised."""
    cause = exc.cause
    if isinstance(cause, ApplicationError) and cause.type == "InvalidInputError":
        field, _, problem = cause.message.partition(": ")
        raise InvalidInputError(field, problem) from None
    raise LongthreadError(str(cause) if cause else str(exc)) from exc


class Conversation:
    def __init__(self, lt: Longthread, session: str, tenant: str) -> None:
        self.lt = lt
        self.session = session
        self.tenant = tenant
        self.id = workflow_id(tenant, session)

    @property
    def handle(self) -> WorkflowHandle[ConversationWorkflow, ConversationStats]:
        return self.lt.client.get_workflow_handle_for(ConversationWorkflow.run, self.id)

    def _start(self) -> WithStartWorkflowOperation[ConversationWorkflow, ConversationStats]:
        return WithStartWorkflowOperation(
            ConversationWorkflow.run,
            ConversationInput(tenant=self.tenant, session=self.session),
            id=self.id,
            task_queue=self.lt.task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        )

    async def attach(self) -> ConversationStats:
        return await self.lt.client.execute_update_with_start_workflow(
            ConversationWorkflow.attach, start_workflow_operation=self._start()
        )

    async def append_many(self, messages: Sequence[Mapping[str, Any] | Message]) -> AppendResult:
        parsed = parse_messages(list(messages))
        try:
            return await self.lt.client.execute_update_with_start_workflow(
                ConversationWorkflow.append_many, AppendInput(messages=tuple(parsed)),
                start_workflow_operation=self._start(),
            )
        except WorkflowUpdateFailedError as exc:
            _raise_clear(exc)
            raise

    async def append(self, message: Mapping[str, Any] | Message) -> AppendResult:
        return await self.append_many([message])

    async def messages(self) -> list[Message]:
        return await self.handle.query(ConversationWorkflow.messages)

    async def stats(self) -> ConversationStats:
        return await self.handle.query(ConversationWorkflow.stats)

    async def close(self) -> None:
        await self.handle.signal(ConversationWorkflow.close)


class Longthread:
    def __init__(self, client: Client, settings: Settings) -> None:
        self.client = client
        self.settings = settings
        self.task_queue = settings.task_queue

    @classmethod
    async def connect(cls, settings: Settings | None = None) -> Longthread:
        settings = settings or Settings()
        return cls(await connect_client(settings), settings)

    async def conversation(self, session: str, tenant: str = "default") -> Conversation:
        """Start the session's workflow, or attach to it if it is already running."""
        conv = Conversation(self, check_ids(tenant, session)[1], tenant)
        await conv.attach()
        return conv
