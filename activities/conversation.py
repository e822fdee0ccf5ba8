"""The conversation's activities: the engine and the store, outside the workflow sandbox.

Planning, summarizing, merging and applying ledger records run here, so improving them is not
a determinism change: the workflow sees only cursors and record ids. Dependencies come in
through the constructor, so tests build the class with real parts and the worker builds it
once per process (the embedding model loads once).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities import metrics, specs
from activities.chat import ServingActivities
from activities.edits import EditActivities, now
from activities.ingest import EMBED_BATCH, EMBED_SECONDS, INDEX_ROUNDS, IngestActivities
from activities.providers.embedders import Embedder
from activities.providers.errors import empty_reply
from activities.providers.llm import AsyncSummarizer, ChatModel, LocalExtractive
from activities.running import heartbeating, refused, running_activity
from activities.types import (
    CompactOutcome,
    CompactSessionInput,
    SessionRef,
)
from memory.compaction import (
    compose_record,
    merge_pool,
    no_gain,
    plan_compaction,
)
from memory.errors import SessionErasedError
from memory.models import (
    CompactionEvent,
    Message,
    Summary,
)
from memory.store.store import Store
from memory.summarizer import SummaryResult

# The constants stay importable from here, where benches and tests have always found them.
__all__ = ["EMBED_BATCH", "EMBED_SECONDS", "INDEX_ROUNDS", "ConversationActivities",
           "heartbeating"]


class ConversationActivities(IngestActivities, ServingActivities, EditActivities):
    """Every activity a conversation's workflow calls: the append path (`IngestActivities`),
    serving and chat (`ServingActivities`), undo, window edits and import (`EditActivities`)
    and compaction."""

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
        # Every message is formatted before it is logged (here and below): the SDK appends the
        # activity's details, whose workflow id holds '%' ('-' is escaped as %2D), to the
        # message, and logging then formatted that with the args: the line was lost.
        activity.logger.info(
            f"compaction {event.kind}: {event.record_id} level={event.level} tokens "
            f"{event.tokens_before} -> {event.tokens_after} ratio="
            f"{f'{event.ratio:.2f}' if event.ratio else None} duration_ms={event.duration_ms} "
            f"reason={event.reason}" + (f" error={event.error}" if event.error else ""))
        metrics.compaction_event(event)
        await self.store.add_event(ref.tenant, ref.session, event)

    async def _completed_late(self, ref: SessionRef, record_id: str,
                              outcome: CompactOutcome) -> None:
        """The "completed" event of a record an earlier attempt committed and died before
        recording (an SRE's user test: a worker SIGKILLed between the two left `started`
        alone, and the completed-compactions metric missed it)."""
        if record_id not in outcome.record_ids:
            return
        kinds = {e.kind for e in await self.store.events(ref.tenant, ref.session, limit=50)
                 if e.record_id == record_id}
        if "started" not in kinds or "completed" in kinds:
            return
        (record,) = await self.store.ledger(ref.tenant, ref.session, ids={record_id})
        await self._event(ref, CompactionEvent(
            kind="completed", record_id=record_id, level=record.level, reason=record.reason,
            tokens_before=record.tokens_before, tokens_after=record.tokens_after,
            ratio=record.ratio, duration_ms=record.duration_ms))

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
            activity.logger.warning(f"summarizer fell back: {fallback}")
            metrics.summarizer_fallback("summary")
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
            activity.logger.warning(f"summary merge fell back: {note}")
            metrics.summarizer_fallback("merge")
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
        try:
            return await self._compact(input)
        except SessionErasedError as exc:  # refused, never retried: the session is gone
            raise refused(exc) from None

    async def _compact(self, input: CompactSessionInput) -> CompactOutcome:
        loaded = await self.store.load_window(input.tenant, input.session)
        if loaded.version != input.expected_head:
            outcome = await self._already(input, loaded, input.expected_head)
            await self._completed_late(input, f"c{input.expected_head + 1}", outcome)
            return outcome
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
                              strategy=result.strategy, created_at=now())
            strategy, model, version = result.strategy, result.model, result.prompt_version
        merge_text = None
        if plan.merge_summary_ids and strategy == "abstractive":  # the model wrote the leaf
            merge_text, fallback = await self._merge_text(
                merge_pool(loaded.state, plan, summary), plan.summary_max_tokens, input.focus)
        window, record = compose_record(
            loaded.state, plan, record_id=record_id, seq=seq, summary=summary,
            strategy=strategy, trigger=input.trigger, model=model, prompt_version=version,
            fallback=fallback, duration_ms=(time.perf_counter() - started) * 1000, at=now(),
            merge_text=merge_text, focus=input.focus, actor=input.actor)
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
