"""The public async client: `Longthread.connect()` and `Conversation`.

Every call goes through the conversation's workflow; update-with-start means the first call
on a session creates it and every later call attaches to the same durable workflow.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

from temporalio.client import (
    Client,
    RPCError,
    WithStartWorkflowOperation,
    WorkflowHandle,
    WorkflowUpdateFailedError,
)
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCStatusCode

from memory.errors import InvalidInputError, LongthreadError, NotFoundError
from memory.models import (
    CompactionEvent,
    CompactionRecord,
    ContextWindow,
    Message,
    Summary,
    parse_messages,
)
from memory.policy import CompactionPolicy
from worker.main import connect_client
from worker.settings import Settings
from workflows.conversation import ConversationWorkflow, workflow_id
from workflows.types import (
    SESSION_PATTERN,
    TENANT_PATTERN,
    AppendInput,
    AppendResult,
    CompactInput,
    ContextInput,
    ConversationInput,
    ConversationStats,
    GenerateInput,
    GenerateResult,
    RestoreInput,
    UncompactInput,
)

__all__ = ["MAX_BATCH_BYTES", "Conversation", "Longthread"]

log = logging.getLogger(__name__)

# Temporal caps one payload at 2 MB; a batch stays well below so JSON overhead never crosses it.
MAX_BATCH_BYTES = 1_500_000
T = TypeVar("T")


def check_ids(tenant: str, session: str) -> tuple[str, str]:
    if not re.match(TENANT_PATTERN, tenant):
        raise InvalidInputError("tenant", "must be 1-100 of A-Z a-z 0-9 _ . @ : (no '-')")
    if not re.match(SESSION_PATTERN, session):
        raise InvalidInputError("session", "must be 1-200 of A-Z a-z 0-9 _ . @ : -")
    return tenant, session


def _transient(exc: RPCError) -> bool:
    return exc.status in (RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED,
                          RPCStatusCode.RESOURCE_EXHAUSTED) or "no poller" in exc.message


def _raise_clear(exc: WorkflowUpdateFailedError) -> None:
    """Turn a rejected update back into the error the workflow raised."""
    cause: BaseException | None = exc.cause
    while cause is not None and not isinstance(cause, ApplicationError):
        cause = cause.__cause__
    if isinstance(cause, ApplicationError) and cause.type == "InvalidInputError":
        field, _, problem = cause.message.partition(": ")
        raise InvalidInputError(field, problem) from None
    raise LongthreadError(str(cause or exc)) from exc


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
            ConversationInput(tenant=self.tenant, session=self.session, policy=self.lt.policy,
                              idle_timeout_seconds=self.lt.settings.idle_timeout_seconds),
            id=self.id, task_queue=self.lt.task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        )

    async def _update(self, update: Any, arg: Any = None) -> Any:
        """Send an update, starting the workflow first if needed (update-with-start).

        While no worker is polling (one crashed and another is starting), the server refuses
        updates; we retry with the same update id, so an update that was already accepted is
        answered once and never applied twice.
        """
        update_id = str(uuid.uuid4())
        deadline = time.monotonic() + self.lt.settings.client_retry_seconds
        delay = 0.2
        while True:
            args = [] if arg is None else [arg]
            try:
                return await self.lt.client.execute_update_with_start_workflow(
                    update, *args, id=update_id, start_workflow_operation=self._start())
            except WorkflowUpdateFailedError as exc:
                _raise_clear(exc)
                raise
            except RPCError as exc:
                if not _transient(exc) or time.monotonic() > deadline:
                    raise
                log.warning("update %s not delivered (%s); retrying", update_id, exc.message)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

    async def attach(self) -> ConversationStats:
        stats: ConversationStats = await self._update(ConversationWorkflow.attach)
        return stats

    async def append_many(self, messages: Sequence[Mapping[str, Any] | Message]) -> AppendResult:
        """Append a batch; messages already appended (same id, same content) are skipped."""
        parsed = parse_messages(list(messages))
        size = sum(len(m.model_dump_json()) for m in parsed)
        if size > MAX_BATCH_BYTES:
            raise InvalidInputError(
                "messages", f"batch is {size} bytes; the limit per call is {MAX_BATCH_BYTES} "
                "bytes (Temporal caps a payload at 2 MB): send fewer or smaller messages")
        result: AppendResult = await self._update(ConversationWorkflow.append_many,
                                                  AppendInput(messages=tuple(parsed)))
        return result

    async def append(self, message: Mapping[str, Any] | Message) -> AppendResult:
        return await self.append_many([message])

    async def context(self, query: str | None = None, max_tokens: int = 4000,
                      k: int = 40, neighbours: int = 1,
                      shares: tuple[float, float, float] | None = None) -> ContextWindow:
        if max_tokens < 1:
            raise InvalidInputError("max_tokens", "must be at least 1")
        window: ContextWindow = await self._update(ConversationWorkflow.context, ContextInput(
            query=query, max_tokens=max_tokens, k=k, neighbours=neighbours, shares=shares))
        return window

    async def compact(self, preserve_recent: int | None = None,
                      focus: str | None = None) -> CompactionRecord | None:
        record: CompactionRecord | None = await self._update(
            ConversationWorkflow.compact, CompactInput(preserve_recent=preserve_recent,
                                                       focus=focus))
        return record

    async def uncompact(self, record_id: str) -> CompactionRecord:
        record: CompactionRecord = await self._update(ConversationWorkflow.uncompact,
                                                      UncompactInput(record_id=record_id))
        return record

    async def restore_ledger(self, records: Sequence[CompactionRecord]) -> int:
        """Re-apply an exported ledger to a freshly imported copy of its session."""
        count: int = await self._update(ConversationWorkflow.restore_ledger,
                                        RestoreInput(records=tuple(records)))
        return count

    async def generate(self, content: str, *, max_tokens: int = 4000,
                       reply_tokens: int = 1024) -> GenerateResult:
        result: GenerateResult = await self._update(ConversationWorkflow.generate, GenerateInput(
            content=content, max_tokens=max_tokens, reply_tokens=reply_tokens))
        return result

    async def _query(self, query: Any) -> Any:
        try:
            return await self.handle.query(query)
        except RPCError as exc:
            if "not found" in str(exc).lower():
                raise NotFoundError(f"session: no conversation {self.session!r} for tenant "
                                    f"{self.tenant!r}") from None
            raise

    async def stats(self) -> ConversationStats:
        stats: ConversationStats = await self._query(ConversationWorkflow.stats)
        return stats

    async def settle(self, timeout: float = 300.0, poll: float = 0.2) -> ConversationStats:
        """Wait until background archiving, compaction and audit writes are done.

        Appends return before their messages are archived or compacted; call this before
        reading the store directly or exporting. Three quiet reads in a row are required so a
        pass that is between steps is not mistaken for the end. Raises TimeoutError.
        """
        async with asyncio.timeout(timeout):
            quiet = 0
            while True:
                stats = await self.stats()
                quiet = 0 if stats.busy else quiet + 1
                if quiet >= 3:
                    return stats
                await asyncio.sleep(poll)

    async def ledger(self) -> list[CompactionRecord]:
        records: list[CompactionRecord] = await self._query(ConversationWorkflow.ledger)
        return records

    async def events(self) -> list[CompactionEvent]:
        found: list[CompactionEvent] = await self._query(ConversationWorkflow.events)
        return found

    async def window(self) -> list[Message]:
        messages: list[Message] = await self._query(ConversationWorkflow.window)
        return messages

    async def summaries(self) -> list[Summary]:
        found: list[Summary] = await self._query(ConversationWorkflow.summaries)
        return found

    async def close(self) -> None:
        """Archive what is pending, checkpoint, and end the run; it resumes on next use."""
        await self.handle.signal(ConversationWorkflow.close)


class Longthread:
    def __init__(self, client: Client, settings: Settings,
                 policy: CompactionPolicy | None = None) -> None:
        self.client = client
        self.settings = settings
        self.task_queue = settings.task_queue
        self.policy = policy or CompactionPolicy(context_window=settings.context_window,
                                                 preserve_recent=settings.preserve_recent)

    @classmethod
    async def connect(cls, settings: Settings | None = None,
                      policy: CompactionPolicy | None = None) -> Longthread:
        settings = settings or Settings()
        try:
            client = await connect_client(settings)
        except RuntimeError as exc:
            raise ConnectionError(
                f"no running stack at {settings.temporal_address}: start one with "
                "`longthread dev` (or set LONGTHREAD_TEMPORAL_ADDRESS)") from exc
        return cls(client, settings, policy)

    async def conversation(self, session: str, tenant: str = "default") -> Conversation:
        """Start the session's workflow, or attach to it if it is already running."""
        check_ids(tenant, session)
        conv = Conversation(self, session, tenant)
        await conv.attach()
        return conv
