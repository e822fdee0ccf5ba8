"""`Conversation`: one session, as the client sees it.

Writes go through the session's workflow (update-with-start: the first call on a session
creates it, every later one attaches), which orders and retries them. Reads (`context()`, the
ledger, the window, events) come straight from the store, which is the source of truth.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

from pydantic import ValidationError
from temporalio.client import (
    RPCError,
    WithStartWorkflowOperation,
    WorkflowHandle,
    WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
)
from temporalio.common import WorkflowIDConflictPolicy

from longthread.conversation_reads import MAX_FETCH_IDS, ConversationReads
from longthread.replies import (
    CompactAttempt,
    closing,
    in_whole_ledger,
    never_accepted,
    raise_clear,
    undelivered,
)
from longthread.sizes import (  # some re-exported for callers of before session 32
    MAX_BATCH_BYTES,
    MessageTooLarge,
    check_message_sizes,
    content_over_limit,
    largest_field,
    message_bytes,
    weighed,
)
from longthread.transfer import ledger_parts
from memory.errors import InvalidInputError, LongthreadError, NotFoundError
from memory.models import (
    CompactionRecord,
    Message,
    invalid_input,
    parse_messages,
)
from workflows.conversation import ConversationWorkflow, workflow_id
from workflows.types import (
    AppendInput,
    AppendResult,
    CompactInput,
    CompactOutcome,
    ConversationInput,
    ConversationStats,
    EditInput,
    GenerateInput,
    GenerateResult,
    RestoreInput,
    UncompactInput,
)

if TYPE_CHECKING:
    from longthread.client import Longthread

__all__ = ["MAX_BATCH_BYTES", "MAX_FETCH_IDS", "Conversation", "MessageTooLarge",
           "check_message_sizes", "content_over_limit", "largest_field", "message_bytes",
           "weighed"]

log = logging.getLogger(__name__)


def _forget_start_error(start: WithStartWorkflowOperation[Any, Any]) -> None:
    """Take the start's failure off its future once the call has failed. The SDK puts a
    failed update-with-start's error on the start operation too, which nobody awaits here (the
    call raised it already), so asyncio printed "Future exception was never retrieved" for
    each retry: 123 times in a load test with no error."""
    started = getattr(start, "_workflow_handle", None)  # the SDK's; no public way to ask
    if isinstance(started, asyncio.Future) and started.done() and not started.cancelled():
        started.exception()


def _unanswered(update: Any, idempotent: bool, why: str = "the server's deadline ran out "
                "under load") -> LongthreadError:
    """The server's wait for an update ran out, or the connection broke while it waited: say
    whether it ran, and what is safe."""
    name = getattr(update, "__name__", "update")
    safe = ("sending the same messages again stores nothing twice" if idempotent else
            "check the ledger (`longthread ledger SESSION`) before sending it again")
    return LongthreadError(f"{name}: Temporal gave no answer in time ({why}); it may have "
                           f"been applied: {safe}")


def _raise_own_cancellation(exc: BaseException) -> None:
    """The SDK turns the caller's cancellation into WorkflowUpdateRPCTimeoutOrCancelledError;
    give the task its CancelledError back, which `asyncio.timeout()` and task groups expect."""
    task = asyncio.current_task()
    if (isinstance(exc, WorkflowUpdateRPCTimeoutOrCancelledError)
            and isinstance(exc.__cause__, asyncio.CancelledError)
            and task is not None and task.cancelling()):
        raise exc.__cause__ from None


class Conversation(ConversationReads):
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

    async def _update(self, update: Any, arg: Any = None, *, idempotent: bool = False) -> Any:
        """Send an update, starting the workflow first if needed (update-with-start).

        While no worker is polling (one crashed and another is starting), the server refuses
        updates; we retry with the same update id, so an update that was already accepted is
        answered once and never applied twice. When the server's wait runs out instead, the
        update may have been accepted, and Temporal knows its id only within the run: sent
        again after a continue-as-new, it would run again. So only an `idempotent` update
        (an append, stored by its update id; an attach) is sent again then.
        """
        update_id = str(uuid.uuid4())
        deadline = time.monotonic() + self.lt.settings.client_retry_seconds
        delay = 0.2
        while True:
            args = [] if arg is None else [arg]
            start = self._start()
            try:
                return await self.lt.client.execute_update_with_start_workflow(
                    update, *args, id=update_id, start_workflow_operation=start)
            except WorkflowUpdateFailedError as exc:
                if not closing(exc) or time.monotonic() > deadline:
                    raise_clear(exc)
                    raise
                # The run is closing (idle) and refused it before accepting it: once it has
                # ended, update-with-start starts the next run, which takes it.
                log.info("session %r is closing; sending again to its next run", self.session)
                update_id = str(uuid.uuid4())  # refused by the validator: never accepted
            except (RPCError, WorkflowUpdateRPCTimeoutOrCancelledError) as exc:
                _raise_own_cancellation(exc)
                # Past acceptance, only an idempotent update may be sent again.
                failed = undelivered(exc) if idempotent or never_accepted(exc) else None
                if failed is None or time.monotonic() > deadline:
                    if isinstance(exc, WorkflowUpdateRPCTimeoutOrCancelledError):
                        raise _unanswered(update, idempotent) from exc
                    if (lost := undelivered(exc)) is not None:  # after it may have run
                        raise _unanswered(update, idempotent, lost.message) from exc
                    raise
                log.warning("update %s not answered (%s); sending it again", update_id,
                            failed.message)
            finally:
                _forget_start_error(start)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

    async def attach(self) -> ConversationStats:
        stats: ConversationStats = await self._update(ConversationWorkflow.attach,
                                                      idempotent=True)
        return stats

    # -- writes, through the workflow ------------------------------------------------------
    async def append_many(self, messages: Sequence[Mapping[str, Any] | Message], *,
                          hold_compaction: bool = False) -> AppendResult:
        """Append a batch; messages already appended (same id, same content) are skipped.
        `hold_compaction` (for imports that carry a ledger) pauses automatic compaction until
        `restore_ledger` or an ordinary append."""
        for index, raw in enumerate(messages if isinstance(messages, Sequence) else ()):
            if (size := content_over_limit(raw)) is not None:  # before parsing: see there
                raise MessageTooLarge("messages", index, "content", size, content_only=True)
        parsed = parse_messages(messages)  # refuses a lone message: it wants a list
        if not parsed:
            raise InvalidInputError("messages", "must hold at least one message")
        sizes = [message_bytes(m) for m in parsed]
        size = sum(sizes)
        check_message_sizes(parsed, sizes)
        if size > MAX_BATCH_BYTES:
            raise InvalidInputError(
                "messages", f"batch is {size} bytes; the limit per call is {MAX_BATCH_BYTES} "
                "bytes (Temporal caps a payload at 2 MB): send fewer or smaller messages")
        result: AppendResult = await self._update(ConversationWorkflow.append_many,
                                                  AppendInput(messages=tuple(parsed),
                                                              hold_compaction=hold_compaction),
                                                  idempotent=True)
        return result

    async def append(self, message: Mapping[str, Any] | Message, *,
                     hold_compaction: bool = False) -> AppendResult:
        return await self.append_many([message], hold_compaction=hold_compaction)

    async def _records(self, outcome: CompactOutcome) -> list[CompactionRecord]:
        return await (await self.lt.store()).ledger(self.tenant, self.session,
                                                    ids=outcome.record_ids)

    def _actor(self, actor: str | None) -> str | None:
        """Who asks: the call's `actor`, else the connection's setting (None: nobody named)."""
        return actor if actor is not None else self.lt.settings.actor

    async def try_compact(self, preserve_recent: int | None = None,
                          focus: str | None = None, *, actor: str | None = None
                          ) -> CompactAttempt:
        """Compact now, and say why when nothing was committed. `actor` (who asks) goes into
        the ledger record."""
        try:
            request = CompactInput(preserve_recent=preserve_recent, focus=focus,
                                   actor=self._actor(actor))
        except ValidationError as exc:  # a negative preserve_recent, a focus over the limit
            raise invalid_input(exc) from None
        outcome: CompactOutcome = await self._update(ConversationWorkflow.compact, request)
        records = await self._records(outcome)
        # A worker older than `skipped` leaves it None: the reply then reads "nothing to compact".
        return CompactAttempt(records[-1] if records else None, outcome.skipped)

    async def compact(self, preserve_recent: int | None = None,
                      focus: str | None = None, *, actor: str | None = None
                      ) -> CompactionRecord | None:
        """Compact now; None when nothing is left to compact, or when compacting would not
        shrink the window (`try_compact` says which)."""
        return (await self.try_compact(preserve_recent, focus, actor=actor)).record

    async def uncompact(self, record_id: str, *, with_later: bool = False,
                        actor: str | None = None) -> CompactionRecord:
        """Undo a ledger record (a compaction, pop or clear): its messages return to the
        window. A compaction whose summary a later record took out (a merge, or a clear) is
        refused, naming those to undo first; `with_later` undoes them too, newest first, in
        one step (all or none).
        Returns the undo record of `record_id`; the others are in the ledger before it."""
        try:
            request = UncompactInput(record_id=record_id, with_later=with_later,
                                     actor=self._actor(actor))
        except ValidationError as exc:  # empty, over 200 characters, not a string
            raise invalid_input(exc) from None
        outcome: CompactOutcome = await self._update(ConversationWorkflow.uncompact, request)
        return (await self._records(outcome))[-1]

    def _edit(self, kind: Literal["pop", "clear"], actor: str | None) -> EditInput:
        try:
            return EditInput(kind=kind, actor=self._actor(actor))
        except ValidationError as exc:
            raise invalid_input(exc) from None

    async def pop(self, *, actor: str | None = None) -> list[Message]:
        """Take the newest message (with its tool call or results) out of the window, as an
        undoable ledger record; returns what left the window (the archive keeps it)."""
        outcome: CompactOutcome = await self._update(ConversationWorkflow.edit_window,
                                                     self._edit("pop", actor))
        records = await self._records(outcome)
        if not records:
            return []
        return await (await self.lt.store()).get_messages(self.tenant, self.session,
                                                          records[-1].covered_ids)

    async def clear(self, *, actor: str | None = None) -> CompactionRecord | None:
        """Empty the window (messages and summaries), as an undoable ledger record."""
        outcome: CompactOutcome = await self._update(ConversationWorkflow.edit_window,
                                                     self._edit("clear", actor))
        records = await self._records(outcome)
        return records[-1] if records else None

    async def restore_ledger(self, records: Sequence[CompactionRecord | Mapping[str, Any]]
                             ) -> int:
        """Re-apply an exported ledger to a freshly imported copy of its session, in parts of
        at most MAX_BATCH_BYTES (automatic compaction stays held until the last). A refused
        record is named by its place in the whole ledger; the parts before it stay applied."""
        parts = ledger_parts(records, MAX_BATCH_BYTES)
        restored = 0
        for n, (start, part) in enumerate(parts):
            try:
                outcome: CompactOutcome = await self._update(
                    ConversationWorkflow.restore_ledger,
                    RestoreInput(records=part, more=n < len(parts) - 1))
            except InvalidInputError as exc:
                raise in_whole_ledger(exc, start) from None
            restored += len(outcome.record_ids)
        return restored

    async def generate(self, content: str, *, id: str | None = None, name: str | None = None,
                       max_tokens: int = 4000, reply_tokens: int = 1024) -> GenerateResult:
        """Store `content` as the user's turn, build the context for it, call the configured
        chat model and store its reply. The turn is stored before the model is called, so
        it is kept when the call fails; pass the same `id` again to retry without storing a
        second copy of it."""
        try:
            request = GenerateInput(content=content, id=id, name=name, max_tokens=max_tokens,
                                    reply_tokens=reply_tokens)
        except ValidationError as exc:
            raise invalid_input(exc) from None
        result: GenerateResult = await self._update(ConversationWorkflow.generate, request)
        return result

    async def close(self) -> None:
        """Finish embedding and end the run; the session resumes from the store on next use."""
        await self.handle.signal(ConversationWorkflow.close)

    # -- the run's state, from the workflow ------------------------------------------------
    async def stats(self) -> ConversationStats:
        try:
            stats: ConversationStats = await self.handle.query(ConversationWorkflow.stats)
        except RPCError as exc:
            if "not found" in str(exc).lower():
                raise NotFoundError(f"session: no conversation {self.session!r} for tenant "
                                    f"{self.tenant!r}") from None
            raise
        return stats

    async def settle(self, timeout: float = 300.0, poll: float = 0.1) -> ConversationStats:
        """Wait until background embedding and compaction are done (appends are stored before
        they return). Two quiet reads in a row are required, so a pass between steps is not
        taken for the end. Raises TimeoutError."""
        async with asyncio.timeout(timeout):
            quiet = 0
            while True:
                stats = await self.stats()
                quiet = 0 if stats.busy else quiet + 1
                if quiet >= 2:
                    return stats
                await asyncio.sleep(poll)
