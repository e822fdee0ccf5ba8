"""The conversation's activities: the engine and the store, outside the workflow sandbox.

Planning, summarizing, merging and applying ledger records run here, so improving them is not
a determinism change: the workflow sees only cursors and record ids. Dependencies come in
through the constructor, so tests build the class with real parts and the worker builds it
once per process (the embedding model loads once).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities import specs
from activities.chat import ServingActivities
from activities.ingest import EMBED_BATCH, EMBED_SECONDS, INDEX_ROUNDS, IngestActivities
from activities.providers.embedders import Embedder
from activities.providers.errors import empty_reply
from activities.providers.llm import AsyncSummarizer, ChatModel, LocalExtractive
from activities.running import heartbeating, refused, running_activity
from activities.types import (
    CompactOutcome,
    CompactSessionInput,
    EditWindowInput,
    RestoreLedgerInput,
    SessionRef,
    UncompactSessionInput,
)
from memory.compaction import (
    apply_record,
    compose_record,
    merge_pool,
    no_gain,
    plan_compaction,
)
from memory.errors import InvalidInputError, LedgerConflictError
from memory.models import (
    CompactionEvent,
    CompactionRecord,
    Message,
    Summary,
    content_hash,
)
from memory.store.sessions import LoadedWindow
from memory.store.store import Store
from memory.summarizer import SummaryResult
from memory.undo import compose_undos, undo_chain
from memory.window import by_reference, compose_removal

# The constants stay importable from here, where benches and tests have always found them.
__all__ = ["EMBED_BATCH", "EMBED_SECONDS", "INDEX_ROUNDS", "ConversationActivities",
           "heartbeating"]


def _now() -> datetime:
    return datetime.now(UTC)


class ConversationActivities(IngestActivities, ServingActivities):
    """Every activity a conversation's workflow calls: the append path (`IngestActivities`),
    serving and chat (`ServingActivities`) and the engine's (compaction, undo, window edits,
    import)."""

    def __init__(
        self,
        store: Store,
        embedder: Embedder,
        summarizer: AsyncSummarizer | None = None,
        chat: ChatModel | None = None,
        max_summarizer_failures: int = 3,
    ) -> None:
        self.store = store
        self.embedder = embedder
        self.summarizer = summarizer or LocalExtractive()
        self.extractive = LocalExtractive()
        self.chat = chat
        self.max_summarizer_failures = max_summarizer_failures

    async def aclose(self) -> None:
        """Close the provider SDK clients (their HTTP pools); local models have none."""
        for provider in (self.summarizer, self.chat, self.embedder):
            close = getattr(provider, "aclose", None)
            if close is not None:
                await close()

    # -- compaction ------------------------------------------------------------------------
    async def _event(self, ref: SessionRef, event: CompactionEvent) -> None:
        activity.logger.info(
            "compaction %s: %s level=%s tokens %s -> %s ratio=%s duration_ms=%s reason=%s%s",
            event.kind, event.record_id, event.level, event.tokens_before, event.tokens_after,
            f"{event.ratio:.2f}" if event.ratio else None, event.duration_ms, event.reason,
            f" error={event.error}" if event.error else "")
        await self.store.add_event(ref.tenant, ref.session, event)

    async def _already(self, ref: SessionRef, loaded: LoadedWindow,
                       expected: int) -> CompactOutcome:
        """The head moved past `expected`: an earlier attempt of this activity committed."""
        if loaded.version < expected:
            raise ApplicationError(f"ledger is at {loaded.version}, not {expected}",
                                   type="LedgerConflictError", non_retryable=True)
        records = await self.store.ledger(ref.tenant, ref.session, start=expected,
                                          stop=loaded.version)
        return CompactOutcome(record_ids=tuple(r.id for r in records),
                              cursors=await self.store.cursors(ref.tenant, ref.session))

    async def _commit(self, ref: SessionRef, head: int,
                      steps: list[tuple[CompactionRecord, Any]], next_base: int
                      ) -> CompactOutcome:
        try:
            out = await self.store.commit_records(ref.tenant, ref.session, head, steps,
                                                  next_base)
        except LedgerConflictError as exc:
            raise ApplicationError(str(exc), type="LedgerConflictError",
                                   non_retryable=True) from None
        except InvalidInputError as exc:  # a forged import: a summary id with another body
            raise refused(exc) from None
        first, last = out.records[0], out.records[-1]
        return CompactOutcome(record_ids=tuple(r.id for r in out.records),
                              tokens_before=first.tokens_before, tokens_after=last.tokens_after,
                              cursors=out.cursors)

    async def _summarize(self, ref: SessionRef, record_id: str, messages: list[Message],
                         max_tokens: int, focus: str | None
                         ) -> tuple[SummaryResult, str | None]:
        """The configured summarizer; after repeated failures (an outage) or a refusal (an
        empty summary among them), the extractive one, with the reason recorded rather than
        the span lost."""
        attempt = activity.info().attempt
        fallback: str | None = None
        if self.summarizer.name != "extractive":
            if attempt <= self.max_summarizer_failures:
                try:
                    result = await heartbeating(self.summarizer.summarize(
                        messages, max_tokens, focus))
                    if not result.text.strip():  # a summarizer of one's own: our rule too
                        raise empty_reply("summary", None)
                    return result, None
                except ApplicationError as exc:
                    if not exc.non_retryable:
                        raise
                    fallback = f"extractive: {self.summarizer.name} rejected ({exc.message})"
            else:
                fallback = (f"extractive: {self.summarizer.name} failed {attempt - 1} times"
                            + await self._last_error(ref, record_id))
            activity.logger.warning("summarizer fell back: %s", fallback)
        result = await heartbeating(self.extractive.summarize(messages, max_tokens, focus))
        return result, fallback

    async def _merge_text(self, summaries: list[Summary], max_tokens: int, focus: str | None
                          ) -> tuple[tuple[str, str] | None, str | None]:
        """The configured summarizer condenses the summaries a record folds, as it wrote them:
        the extractive merge cut a model's fact lines to clauses ("TASK: make refunds
        idempotent, ticket PAY-4711, customer Caroline Ortiz" kept "customer Caroline Ortiz").
        If it fails, the extractive merge stands and the record says why (the leaf summary is
        made: one failed merge does not throw it away)."""
        pseudo = [Message(id=s.id, role="assistant", name="summary", content=s.content)
                  for s in summaries]
        try:
            result = await heartbeating(self.summarizer.summarize(pseudo, max_tokens, focus))
            if not result.text.strip():
                raise empty_reply("summary", None)
        except Exception as exc:  # recorded, not raised: see the docstring
            note = f"merge extractive: {self.summarizer.name} failed ({str(exc)[:200]})"
            activity.logger.warning("summary merge fell back: %s", note)
            return None, note
        return (result.text, "abstractive-hierarchical"), None

    async def _last_error(self, ref: SessionRef, record_id: str) -> str:
        """The last failure the earlier attempts recorded (a `failed` event), for the record's
        fallback reason: "failed 3 times" alone does not say whether to fix a key or wait."""
        events = await self.store.events(ref.tenant, ref.session, limit=20)
        this = running_activity()
        last = next((e.error for e in reversed(events)
                     if e.kind == "failed" and e.record_id == record_id and e.error
                     and e.activity == this), None)
        return f" (last: {last[:200]})" if last else ""

    @activity.defn(name=specs.COMPACT.name)
    async def compact_session(self, input: CompactSessionInput) -> CompactOutcome:
        """Plan, summarize, merge and commit one compaction against the expected ledger head."""
        loaded = await self.store.load_window(input.tenant, input.session)
        if loaded.version != input.expected_head:
            return await self._already(input, loaded, input.expected_head)
        plan = plan_compaction(loaded.state, input.policy,
                               force=input.force or input.trigger == "manual",
                               preserve_recent=input.preserve_recent, catch_up=True)
        if plan is None:
            return CompactOutcome(cursors=await self.store.cursors(input.tenant, input.session))
        seq = loaded.version
        record_id = f"c{seq + 1}"
        started = time.perf_counter()
        await self._event(input, CompactionEvent(
            kind="started", record_id=record_id, level=plan.level, reason=plan.reason,
            tokens_before=plan.tokens_before))
        summary: Summary | None = None
        strategy, model, version, fallback = "archive-only", None, None, None
        if plan.summarize:
            covered_set = set(plan.covered_ids)
            covered = [m for m in loaded.state.messages if m.id in covered_set]
            large = [m.id for m in covered if "body_ref" in m.metadata]
            if large:  # the summarizer reads large bodies in full, from the archive
                full = {m.id: m for m in await self.store.get_messages(
                    input.tenant, input.session, large)}
                covered = [full.get(m.id, m) for m in covered]
            try:
                result, fallback = await self._summarize(input, record_id, covered,
                                                         plan.summary_max_tokens, input.focus)
            except Exception as exc:  # nothing was committed: record why, then let it retry
                await self._event(input, CompactionEvent(
                    kind="failed", record_id=record_id, level=plan.level, reason=plan.reason,
                    tokens_before=plan.tokens_before, error=str(exc)[:300],
                    activity=running_activity()))
                raise
            summary = Summary(id=f"s{seq + 1}", level=1, content=result.text,
                              covers=plan.covered_ids, quoted_ids=result.quoted_ids,
                              strategy=result.strategy, created_at=_now())
            strategy, model, version = result.strategy, result.model, result.prompt_version
        merge_text = None
        if plan.merge_summary_ids and strategy == "abstractive":  # the model wrote the leaf
            merge_text, fallback = await self._merge_text(
                merge_pool(loaded.state, plan, summary), plan.summary_max_tokens, input.focus)
        window, record = compose_record(
            loaded.state, plan, record_id=record_id, seq=seq, summary=summary,
            strategy=strategy, trigger=input.trigger, model=model, prompt_version=version,
            fallback=fallback, duration_ms=(time.perf_counter() - started) * 1000, at=_now(),
            merge_text=merge_text)
        why = no_gain(record)
        if why is not None:  # a manual compact would grow the window: not committed
            await self._event(input, CompactionEvent(
                kind="skipped", record_id=record_id, level=plan.level, reason=plan.reason,
                tokens_before=record.tokens_before, tokens_after=record.tokens_after, error=why))
            return CompactOutcome(cursors=await self.store.cursors(input.tenant, input.session),
                                  skipped=why)
        outcome = await self._commit(input, seq, [(record, window)], loaded.next_base)
        await self._event(input, CompactionEvent(
            kind="completed", record_id=record_id, level=plan.level, reason=plan.reason,
            tokens_before=record.tokens_before, tokens_after=record.tokens_after,
            ratio=record.ratio, duration_ms=record.duration_ms))
        return outcome

    async def _originals(self, ref: SessionRef, ids: tuple[str, ...]
                         ) -> tuple[dict[str, Message], dict[str, int]]:
        found = await self.store.get_with_seq(ref.tenant, ref.session, ids)
        return ({m.id: by_reference(m) for _, m in found}, {m.id: seq for seq, m in found})

    @activity.defn(name=specs.UNCOMPACT.name)
    async def uncompact_session(self, input: UncompactSessionInput) -> CompactOutcome:
        loaded = await self.store.load_window(input.tenant, input.session)
        if loaded.version != input.expected_head:
            return await self._already(input, loaded, input.expected_head)
        ledger = await self.store.ledger(input.tenant, input.session)
        undone = {input.record_id, *(undo_chain(input.record_id, ledger,
                                                {s.id for s in loaded.state.summaries})
                                     if input.with_later else ())}
        covered = tuple(i for r in ledger if r.id in undone and r.trigger != "undo"
                        for i in r.covered_ids)
        originals, order = await self._originals(input, covered)
        try:
            steps = compose_undos(
                loaded.state, input.record_id, ledger, with_later=input.with_later,
                seq=loaded.version, originals=originals, order={**loaded.order, **order},
                at=_now())
        except InvalidInputError as exc:
            raise refused(exc) from None
        return await self._commit(input, loaded.version,
                                  [(record, window) for window, record in steps],
                                  loaded.next_base)

    @activity.defn(name=specs.EDIT_WINDOW.name)
    async def edit_window(self, input: EditWindowInput) -> CompactOutcome:
        """Pop the newest message (with its tool unit) or clear the window, as a ledger record:
        the originals stay archived and the record can be undone."""
        loaded = await self.store.load_window(input.tenant, input.session)
        if loaded.version != input.expected_head:
            return await self._already(input, loaded, input.expected_head)
        made = compose_removal(loaded.state, input.kind, seq=loaded.version, at=_now())
        if made is None:
            return CompactOutcome(cursors=await self.store.cursors(input.tenant, input.session))
        window, record = made
        return await self._commit(input, loaded.version, [(record, window)], loaded.next_base)

    @activity.defn(name=specs.RESTORE_LEDGER.name)
    async def restore_ledger(self, input: RestoreLedgerInput) -> CompactOutcome:
        """Re-apply an exported ledger to an imported copy, all or nothing: each record must
        match the imported originals (same covered ids in the window, same covered hash)."""
        loaded = await self.store.load_window(input.tenant, input.session)
        if loaded.version != input.expected_head:
            return await self._already(input, loaded, input.expected_head)
        named = {i for r in input.records for i in (r.id, r.undoes) if i}
        known = {r.id: r for r in await self.store.ledger(input.tenant, input.session,
                                                          ids=named)}
        state, steps = loaded.state, []
        order = dict(loaded.order)
        try:
            for n, record in enumerate(input.records):
                where = f"records[{n}]"
                if record.seq != loaded.version + n:
                    raise InvalidInputError(f"{where}.seq", f"expected {loaded.version + n}, "
                                                            f"got {record.seq}")
                if record.id in known:
                    raise InvalidInputError(f"{where}.id", f"{record.id!r} is already in the "
                                                           "ledger")
                if record.trigger == "undo":
                    if record.undoes not in known:
                        raise InvalidInputError(f"{where}.undoes", f"{record.undoes!r} names no "
                                                                   "earlier record")
                    originals, seqs = await self._originals(input, record.covered_ids)
                    order.update(seqs)
                    state = apply_record(state, record, originals=originals, order=order)
                else:
                    in_window = {m.id: m for m in state.messages}
                    missing = [i for i in record.covered_ids if i not in in_window]
                    if missing:
                        raise InvalidInputError(f"{where}.covered_ids", f"{missing[0]!r} is not "
                                                                        "in the window")
                    if content_hash([in_window[i] for i in record.covered_ids]) != \
                            record.covered_hash:
                        raise InvalidInputError(f"{where}.covered_hash", "the covered messages "
                                                "differ from the imported originals")
                    state = apply_record(state, record)
                known[record.id] = record
                steps.append((record, state))
        except InvalidInputError as exc:
            raise refused(exc) from None
        if not steps:
            return CompactOutcome(cursors=await self.store.cursors(input.tenant, input.session))
        return await self._commit(input, loaded.version, steps, loaded.next_base)

    def all(self) -> list[Callable[..., Any]]:
        """Every activity method, found by the name it registered under in activities/specs.
        Each must bear its activity's name: a decorator left above the wrong method (it
        once put `aclose` under open_session's name) fails here, not in a session."""
        chosen: dict[str, Callable[..., Any]] = {}
        for attr in dir(type(self)):
            defn = getattr(getattr(type(self), attr), "__temporal_activity_definition", None)
            if defn is None:
                continue
            if defn.name != attr:
                raise TypeError(f"method {attr!r} is registered as activity {defn.name!r}; "
                                "an activity method must bear its activity's name")
            chosen[attr] = getattr(self, attr)
        wanted = [spec.name for spec in specs.ALL]
        missing = sorted(set(wanted) - set(chosen))
        if missing:
            raise TypeError(f"no activity method for {missing} (named in activities/specs.py)")
        unlisted = sorted(set(chosen) - set(wanted))
        if unlisted:  # the workflow could not call it: it calls through specs
            raise TypeError(f"activities {unlisted} have no spec in activities/specs.py")
        return [chosen[name] for name in wanted]
