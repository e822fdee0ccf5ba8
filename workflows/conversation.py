"""ConversationWorkflow: one durable workflow per (tenant, session).

Appends return at once: they are validated before anything reaches history, added to the
window and queued for archival. The run loop archives in the background, compacts when the
policy says so (archive first, then summarize, then swap window and ledger in one step), and
continues-as-new well before Temporal's history limits, carrying the whole state across.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.types import (
        ArchiveInput,
        ChatInput,
        CheckpointInput,
        LoadCheckpointInput,
        RecordServedInput,
        SeqMessage,
    )
    from memory.errors import InvalidInputError
    from memory.models import (
        CompactionEvent,
        CompactionRecord,
        ContextWindow,
        Message,
        Summary,
        validate_sequence,
    )
    from memory.tokens import default_counter
    from workflows import activities
    from workflows.compactor import BODY_REF_BYTES, Compactor, by_reference, digest
    from workflows.types import (
        AppendInput,
        AppendResult,
        CompactInput,
        ContextInput,
        ConversationInput,
        ConversationState,
        ConversationStats,
        GenerateInput,
        GenerateResult,
        RestoreInput,
        UncompactInput,
    )

__all__ = ["UPDATES_BEFORE_CONTINUE", "ConversationWorkflow", "workflow_id"]

UPDATES_BEFORE_CONTINUE = 1000  # well before Temporal's ~2,000 updates per run
STATE_LIMIT_BYTES = 1_500_000  # the state handed to continue-as-new must stay under 2 MB
ARCHIVE_BATCH = 256


def workflow_id(tenant: str, session: str) -> str:
    """`conversation-{tenant}-{session}`; tenants contain no '-', so ids never collide."""
    return f"conversation-{tenant}-{session}"


def _rejected(exc: InvalidInputError) -> ApplicationError:
    return ApplicationError(str(exc), type="InvalidInputError", non_retryable=True)


@workflow.defn
class ConversationWorkflow:
    @workflow.init
    def __init__(self, input: ConversationInput) -> None:
        self.input = input
        self.state = input.state or ConversationState()
        self.ready = input.state is not None
        self.closed = False
        self.check_policy = False
        self.working = False  # the run loop is archiving or compacting right now
        self.updates = 0
        self.compactor = Compactor(input, self.state, self._flush_archive)

    # -- the run loop -----------------------------------------------------------------------
    @workflow.run
    async def run(self, input: ConversationInput) -> ConversationStats:
        # Runs that began before served-context auditing existed replay without it.
        self.compactor.audit = workflow.patched("served-audit-v1")
        self.compactor.chunked = workflow.patched("chunked-compaction-v1")
        self.compactor.catch_up = workflow.patched("catch-up-compaction-v1")
        self.compactor.adopt_stored = workflow.patched("stored-ledger-v1")
        if not self.ready:
            await self._restore()
        if self.compactor.catch_up:  # a run continued mid-backlog picks the compaction up
            self.check_policy = self.input.policy.should_compact(self.compactor.window_tokens())
        idle = timedelta(seconds=input.idle_timeout_seconds)
        while True:
            try:
                await workflow.wait_condition(
                    lambda: self.closed or bool(self.state.pending) or self.check_policy
                    or bool(self.state.served_pending) or self._continue_due(), timeout=idle)
            except TimeoutError:
                workflow.logger.info("session idle for %s: checkpointing and closing", idle)
                self.closed = True
            self.working = True
            await self._flush_archive(ARCHIVE_BATCH)
            await self._flush_served()
            if self.check_policy and not self.closed:
                self.check_policy = False
                if workflow.patched("auto-compaction-v1"):
                    await self.compactor.maybe_compact(stop=self._continue_due)
            if self.closed:
                await workflow.wait_condition(workflow.all_handlers_finished)
                await self._flush_archive()
                await self._flush_served()
                await self._checkpoint()
                return self.stats()
            self.working = False
            if self._continue_due() and len(self.state.model_dump_json()) > STATE_LIMIT_BYTES:
                # Never hand continue-as-new a state over Temporal's 2 MB payload cap.
                await self.compactor.compact("auto", force=True)
            if self._continue_due():
                await workflow.wait_condition(workflow.all_handlers_finished)
                self.state.runs += 1  # what is still pending travels in the state
                workflow.continue_as_new(self.input.model_copy(update={"state": self.state}))

    def _continue_due(self) -> bool:
        return (workflow.info().is_continue_as_new_suggested()
                or self.updates >= UPDATES_BEFORE_CONTINUE)

    async def _restore(self) -> None:
        found = await activities.load_checkpoint(
            LoadCheckpointInput(tenant=self.input.tenant, session=self.input.session))
        if found.state_json:
            self.state = ConversationState.model_validate_json(found.state_json)
            self.state.runs += 1
            self.compactor.state = self.state
        self.ready = True

    async def _checkpoint(self) -> None:
        await activities.save_checkpoint(CheckpointInput(
            tenant=self.input.tenant, session=self.input.session,
            state_json=self.state.model_dump_json(), version=self.state.next_seq))

    async def _flush_served(self) -> None:
        batch = list(self.state.served_pending)
        if batch:
            await activities.record_served(RecordServedInput(
                tenant=self.input.tenant, session=self.input.session, records=tuple(batch)))
            done = {s.seq for s in batch}
            self.state.served_pending = [s for s in self.state.served_pending
                                         if s.seq not in done]

    async def _flush_archive(self, limit: int | None = None) -> None:
        """Archive what is pending now (at most `limit`); later appends wait for the next pass,
        so a steady stream of appends can never starve compaction or continue-as-new."""
        todo = len(self.state.pending) if limit is None else min(limit, len(self.state.pending))
        while todo > 0:
            batch = self.state.pending[: min(ARCHIVE_BATCH, todo)]
            await activities.archive(ArchiveInput(
                tenant=self.input.tenant, session=self.input.session,
                messages=tuple(SeqMessage(seq=s, message=m) for s, m in batch)))
            done = {m.id for _, m in batch}
            self.state.pending = [(s, m) for s, m in self.state.pending if m.id not in done]
            todo -= len(batch)

    # -- appending --------------------------------------------------------------------------
    def _check(self, messages: tuple[Message, ...]) -> list[Message]:
        if self.closed:
            raise InvalidInputError("session", "is closed")
        for index, message in enumerate(messages):
            known = self.state.known.get(message.id)
            if known is not None and known[1] != digest(message):
                raise InvalidInputError(f"messages[{index}].id",
                                        f"{message.id!r} was already appended with other content")
        fresh = [m for m in messages if m.id not in self.state.known]
        validate_sequence(fresh, open_tool_calls=self.state.tool_call_ids)
        return fresh

    async def _append(self, messages: tuple[Message, ...]) -> AppendResult:
        await workflow.wait_condition(lambda: self.ready)
        try:
            fresh = self._check(messages)
        except InvalidInputError as exc:
            raise _rejected(exc) from None
        large = [m for m in fresh if len(m.content.encode()) > BODY_REF_BYTES]
        seqs = {m.id: self.state.next_seq + n for n, m in enumerate(fresh)}
        self.state.next_seq += len(fresh)
        for message in fresh:
            self.state.known[message.id] = (seqs[message.id], digest(message))
            self.state.tool_call_ids.extend(c.id for c in message.tool_calls)
            self.state.total_tokens += default_counter().count_message(message.role,
                                                                       message.content)
        if large:  # archived before the update returns; the window keeps a reference
            await activities.archive(ArchiveInput(
                tenant=self.input.tenant, session=self.input.session,
                messages=tuple(SeqMessage(seq=seqs[m.id], message=m) for m in large)))
        large_ids = {m.id for m in large}
        self.state.pending.extend((seqs[m.id], m) for m in fresh if m.id not in large_ids)
        self.compactor.add_to_window([by_reference(m) for m in fresh])
        self.state.last_active = workflow.now()
        self.check_policy = self.check_policy or bool(fresh)
        return AppendResult(appended=len(fresh), duplicates=len(messages) - len(fresh),
                            total=self.state.next_seq)

    @workflow.update
    async def attach(self) -> ConversationStats:
        """Pairs with update-with-start, to start or attach a session."""
        await workflow.wait_condition(lambda: self.ready)
        return self.stats()

    @workflow.update
    async def append_many(self, input: AppendInput) -> AppendResult:
        self.updates += 1
        return await self._append(input.messages)

    @append_many.validator
    def _validate_append(self, input: AppendInput) -> None:
        if self.ready:
            self._check(input.messages)
        elif self.closed:
            raise InvalidInputError("session", "is closed")

    # -- context, compaction, generation -----------------------------------------------------
    @workflow.update
    async def context(self, input: ContextInput) -> ContextWindow:
        self.updates += 1
        await workflow.wait_condition(lambda: self.ready)
        try:
            return await self.compactor.context(input)
        except InvalidInputError as exc:
            raise _rejected(exc) from None

    @workflow.update
    async def compact(self, input: CompactInput) -> CompactionRecord | None:
        self.updates += 1
        await workflow.wait_condition(lambda: self.ready)
        return await self.compactor.compact("manual", input.preserve_recent, input.focus)

    @workflow.update
    async def uncompact(self, input: UncompactInput) -> CompactionRecord:
        self.updates += 1
        await workflow.wait_condition(lambda: self.ready)
        try:
            return await self.compactor.uncompact(input.record_id)
        except InvalidInputError as exc:
            raise _rejected(exc) from None

    @workflow.update
    async def restore_ledger(self, input: RestoreInput) -> int:
        self.updates += 1
        await workflow.wait_condition(lambda: self.ready)
        try:
            return await self.compactor.restore(input.records)
        except (InvalidInputError, StopIteration) as exc:
            raise _rejected(InvalidInputError("records", str(exc) or "unknown undo target")) \
                from None

    @workflow.update
    async def generate(self, input: GenerateInput) -> GenerateResult:
        self.updates += 1
        await workflow.wait_condition(lambda: self.ready)
        user = Message(id=input.id or f"u-{workflow.uuid4()}", role="user",
                       content=input.content, name=input.name, created_at=workflow.now())
        await self._append((user,))
        window = await self.compactor.context(
            ContextInput(query=input.content, max_tokens=input.max_tokens))
        reply = await activities.chat(ChatInput(window=window, max_tokens=input.reply_tokens))
        assistant = Message(id=f"a-{workflow.uuid4()}", role="assistant",
                            content=reply.content or "(empty reply)", created_at=workflow.now())
        await self._append((assistant,))
        return GenerateResult(reply=assistant, context_tokens=window.tokens, model=reply.model)

    # -- reading ----------------------------------------------------------------------------
    @workflow.query
    def stats(self) -> ConversationStats:
        window = self.state.window
        return ConversationStats(
            tenant=self.input.tenant, session=self.input.session,
            messages=self.state.next_seq, archived=self.state.next_seq - len(self.state.pending),
            window_messages=len(window.messages),
            window_tokens=self.compactor.window_tokens(), total_tokens=self.state.total_tokens,
            compactions=sum(1 for r in self.state.ledger if r.trigger != "undo"),
            runs=self.state.runs, pending_archive=len(self.state.pending),
            busy=self.working or self.compactor.busy or self.check_policy
            or bool(self.state.pending) or bool(self.state.served_pending))

    @workflow.query
    def ledger(self) -> list[CompactionRecord]:
        return list(self.state.ledger)

    @workflow.query
    def events(self) -> list[CompactionEvent]:
        return list(self.state.events)

    @workflow.query
    def window(self) -> list[Message]:
        return list(self.state.window.messages)

    @workflow.query
    def summaries(self) -> list[Summary]:
        return list(self.state.window.summaries)

    @workflow.signal
    def close(self) -> None:
        self.closed = True

