"""The workflow's compaction, undo and context steps: workflow code, run inside the sandbox.

One compaction at a time (a flag the handlers wait on). A compaction archives first, then
summarizes through an activity, then swaps the window and appends the ledger record with no
await in between, so a crash anywhere before the swap leaves the session exactly as it was and
the retried run commits it once.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.types import (
        LoadMessagesInput,
        RecordCompactionInput,
        RetrieveInput,
        SummarizeInput,
    )
    from memory.assembly import DEFAULT_SHARES, QUERY_SHARES, Shares, assemble_context
    from memory.audit import ServedContext, window_digest
    from memory.compaction import (
        CompactionPlan,
        WindowState,
        apply_compaction,
        plan_compaction,
        undo_compaction,
        window_tokens,
    )
    from memory.errors import InvalidInputError
    from memory.models import (
        CompactionEvent,
        CompactionRecord,
        ContextWindow,
        Message,
        ScoredMessage,
        Summary,
        Trigger,
    )
    from workflows import activities
    from workflows.types import ContextInput, ConversationInput, ConversationState

__all__ = ["BODY_REF_BYTES", "MAX_EVENTS", "MAX_SERVED", "Compactor", "by_reference", "digest"]

BODY_REF_BYTES = 64 * 1024  # larger bodies are archived first and carried by reference
MAX_EVENTS = 200
MAX_SERVED = 20


def digest(message: Message) -> str:
    return hashlib.sha256(message.model_dump_json().encode()).hexdigest()[:16]


def by_reference(message: Message) -> Message:
    """The window's stand-in for a large body that lives in the archive."""
    size = len(message.content.encode())
    if size <= BODY_REF_BYTES:
        return message
    preview = message.content[:2000]
    return message.model_copy(update={
        "content": f"{preview}\n[… {size} bytes in full in the archive as {message.id}]",
        "metadata": {**message.metadata, "body_ref": size}})




def shares_for(input: ContextInput) -> Shares:
    if input.shares is not None:
        summary, retrieved, recent = input.shares
        return Shares(summary=summary, retrieved=retrieved, recent=recent)
    return QUERY_SHARES if input.query and input.query.strip() else DEFAULT_SHARES


class Compactor:
    def __init__(self, input: ConversationInput, state: ConversationState,
                 flush: Callable[[], Awaitable[None]]) -> None:
        self.input = input
        self.state = state
        self.flush = flush
        self.busy = False
        self.audit = True
        self.chunked = True
        self.catch_up = True  # false for runs from before catch-up compaction (replay)
        self.adopt_stored = True  # false for runs from before the ledger adopted the store's

    # -- window bookkeeping ------------------------------------------------------------------
    def add_to_window(self, messages: list[Message]) -> None:
        window = self.state.window
        self.state.window = WindowState(summaries=window.summaries,
                                        messages=(*window.messages, *messages))

    def window_tokens(self) -> int:
        return window_tokens(self.state.window)

    def _event(self, event: CompactionEvent) -> None:
        workflow.logger.info(
            "compaction %s: %s level=%s tokens %s -> %s ratio=%s duration_ms=%s reason=%s%s",
            event.kind, event.record_id, event.level, event.tokens_before, event.tokens_after,
            f"{event.ratio:.2f}" if event.ratio else None, event.duration_ms, event.reason,
            f" error={event.error}" if event.error else "")
        self.state.events = [*self.state.events[-(MAX_EVENTS - 1):], event]

    # -- compaction --------------------------------------------------------------------------
    async def maybe_compact(self, stop: Callable[[], bool], max_rounds: int = 32) -> int:
        """Compact chunk by chunk while the policy asks for it and each round helps, giving
        way as soon as `stop()` says so (continue-as-new is due: the next run carries on)."""
        rounds = 0
        if not self.chunked:  # runs from before chunked compaction: one compaction per wake
            max_rounds = 1
        while rounds < max_rounds and self.input.policy.should_compact(self.window_tokens()):
            if self.catch_up and stop():
                break
            record = await self.compact("auto")
            if record is None or record.tokens_after >= record.tokens_before:
                break
            rounds += 1
        return rounds

    async def compact(self, trigger: Trigger, preserve_recent: int | None = None,
                      focus: str | None = None, force: bool = False) -> CompactionRecord | None:
        await workflow.wait_condition(lambda: not self.busy)
        self.busy = True
        try:
            record = await self._compact(trigger, preserve_recent, focus,
                                         force or trigger == "manual")
        finally:
            self.busy = False
        if record is not None:
            record = await self._persist(record)
        return record

    async def _persist(self, record: CompactionRecord) -> CompactionRecord:
        """Mirror a record to the store (idempotent by seq and id) and adopt what is stored.

        The store keeps the first write. A record written from a workflow task that later had
        to be retried can carry clock readings (`at`, `duration_ms`, the summary's
        `created_at`) that the replayed history does not reproduce; adopting the stored copy,
        which comes back as an activity result and so is itself in history, keeps the
        workflow's ledger and the store's identical. A different compaction at the same seq
        fails the activity instead (LedgerConflictError).
        """
        arg = RecordCompactionInput(tenant=self.input.tenant, session=self.input.session,
                                    record=record)
        if not self.adopt_stored:
            await activities.record(arg)
            return record
        stored = await activities.record_stored(arg)
        if stored != record:
            self.state.ledger = [stored if r.seq == stored.seq else r for r in self.state.ledger]
            if stored.summary is not None:
                window = self.state.window
                self.state.window = WindowState(messages=window.messages, summaries=tuple(
                    stored.summary if s.id == stored.summary.id else s
                    for s in window.summaries))
        return stored

    async def _compact(self, trigger: Trigger, preserve_recent: int | None,
                       focus: str | None, force: bool) -> CompactionRecord | None:
        await self.flush()  # only archived messages may leave the window
        plan = plan_compaction(self.state.window, self.input.policy, force=force,
                               preserve_recent=preserve_recent,
                               keep_ids={m.id for _, m in self.state.pending},
                               chunked=self.chunked, catch_up=self.catch_up)
        if plan is None:
            return None
        seq = len(self.state.ledger)
        record_id = f"c{seq + 1}"
        started = workflow.now()
        self._event(CompactionEvent(kind="started", record_id=record_id, level=plan.level,
                                    reason=plan.reason, tokens_before=plan.tokens_before))
        summary: Summary | None = None
        strategy, model, version, fallback = "archive-only", None, None, None
        if plan.summarize:
            try:
                result = await activities.summarize(SummarizeInput(
                    tenant=self.input.tenant, session=self.input.session,
                    ids=plan.covered_ids, max_tokens=plan.summary_max_tokens, focus=focus))
            except Exception as exc:  # the window is untouched: record why, then re-raise
                self._event(CompactionEvent(
                    kind="failed", record_id=record_id, level=plan.level, reason=plan.reason,
                    tokens_before=plan.tokens_before, error=str(exc)[:300]))
                raise
            summary = Summary(id=f"s{seq + 1}", level=1, content=result.text,
                              covers=plan.covered_ids, quoted_ids=result.quoted_ids,
                              strategy=result.strategy, created_at=workflow.now())
            strategy, model = result.strategy, result.model
            version, fallback = result.prompt_version, result.fallback
        # The swap: window and ledger change together, with no await in between.
        elapsed = (workflow.now() - started).total_seconds() * 1000
        window, record = apply_compaction(
            self.state.window, plan, record_id=record_id, seq=seq, summary=summary,
            strategy=strategy, trigger=trigger, model=model, prompt_version=version,
            fallback=fallback, duration_ms=elapsed, at=workflow.now())
        self.state.window = window
        self.state.ledger.append(record)
        self._event(CompactionEvent(
            kind="completed", record_id=record_id, level=plan.level, reason=plan.reason,
            tokens_before=record.tokens_before, tokens_after=record.tokens_after,
            ratio=record.ratio, duration_ms=elapsed))
        return record

    async def uncompact(self, record_id: str) -> CompactionRecord:
        record = next((r for r in self.state.ledger if r.id == record_id and r.trigger != "undo"),
                      None)
        if record is None:
            raise InvalidInputError("record_id", f"no compaction {record_id!r} in this session")
        if any(r.undoes == record_id for r in self.state.ledger):
            raise InvalidInputError("record_id", f"{record_id} was already undone")
        await workflow.wait_condition(lambda: not self.busy)
        self.busy = True
        try:
            loaded = await activities.load_messages(LoadMessagesInput(
                tenant=self.input.tenant, session=self.input.session, ids=record.covered_ids))
            originals = [by_reference(m) for m in loaded.messages]
            order = {i: seq for i, (seq, _) in self.state.known.items()}
            before = self.window_tokens()
            self.state.window = undo_compaction(self.state.window, record, originals, order)
            undo = record.model_copy(update={
                "id": f"u{len(self.state.ledger) + 1}", "seq": len(self.state.ledger),
                "trigger": "undo", "undoes": record.id, "tokens_before": before,
                "tokens_after": self.window_tokens(), "at": workflow.now(), "duration_ms": 0.0})
            self.state.ledger.append(undo)
        finally:
            self.busy = False
        return await self._persist(undo)

    async def restore(self, records: tuple[CompactionRecord, ...]) -> int:
        """Re-apply an exported ledger, record by record, refusing any that does not match
        the imported originals (the covered hash must agree)."""
        await workflow.wait_condition(lambda: not self.busy)
        self.busy = True
        try:
            await self.flush()
            for record in records:
                if record.seq != len(self.state.ledger):
                    raise InvalidInputError(
                        "records",
                        f"{record.id}: expected seq {len(self.state.ledger)}, got {record.seq}")
                if record.trigger == "undo":
                    target = next(r for r in self.state.ledger if r.id == record.undoes)
                    loaded = await activities.load_messages(LoadMessagesInput(
                        tenant=self.input.tenant, session=self.input.session,
                        ids=target.covered_ids))
                    order = {i: seq for i, (seq, _) in self.state.known.items()}
                    self.state.window = undo_compaction(
                        self.state.window, target, [by_reference(m) for m in loaded.messages],
                        order)
                else:
                    plan = CompactionPlan(
                        level=record.level, action=record.action, reason=record.reason,
                        covered_ids=record.covered_ids, summarize=record.summary is not None,
                        summary_max_tokens=max(32, self.input.policy.context_window // 8),
                        merge_summary_ids=record.removed_summary_ids,
                        tokens_before=record.tokens_before)
                    window, rebuilt = apply_compaction(
                        self.state.window, plan, record_id=record.id, seq=record.seq,
                        summary=record.summary, strategy=record.strategy)
                    if rebuilt.covered_hash != record.covered_hash:
                        raise InvalidInputError("records", f"{record.id}: covered messages "
                                                           "differ from the exported originals")
                    self.state.window = window
                self.state.ledger.append(record)
        finally:
            self.busy = False
        for record in records:
            await self._persist(record)
        return len(records)

    # -- context -----------------------------------------------------------------------------
    async def context(self, input: ContextInput) -> ContextWindow:
        candidates: list[ScoredMessage] = []
        archived = self.state.next_seq - len(self.state.pending)
        if input.query and input.query.strip() and archived:
            found = await activities.retrieve(RetrieveInput(
                tenant=self.input.tenant, session=self.input.session, query=input.query,
                k=input.k, neighbours=input.neighbours))
            # Candidates still in the window stay: the window may hold more than the budget's
            # recent section shows, and assembly never shows a message twice.
            candidates = list(found.candidates)
        messages = self.state.window.messages
        shares = shares_for(input)
        window = assemble_context(
            max_tokens=input.max_tokens, system=[m for m in messages if m.role == "system"],
            summaries=self.state.window.summaries,
            recent=[m for m in messages if m.role != "system"], retrieved=candidates,
            shares=shares)
        served = ServedContext(
            seq=self.state.served_seq, turn=self.state.next_seq, query=input.query,
            max_tokens=input.max_tokens, tokens=window.tokens,
            source_ids=tuple(window.source_ids), digest=window_digest(window),
            ledger_seq=len(self.state.ledger),
            retrieved=tuple((c.message.id, c.score) for c in candidates),
            shares=(shares.summary, shares.retrieved, shares.recent))
        self.state.served_seq += 1
        self.state.served = [*self.state.served[-(MAX_SERVED - 1):], served]
        if self.audit:
            self.state.served_pending.append(served)
        return window


