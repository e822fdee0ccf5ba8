"""Activities through Temporal's ActivityEnvironment, with the real store and embedder."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from temporalio import activity
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities import specs
from activities.conversation import EMBED_BATCH, ConversationActivities
from activities.providers.embedders import LocalEmbedder
from activities.providers.llm import AnthropicSummarizer
from activities.types import (
    ChatInput,
    CompactSessionInput,
    ContextRequest,
    EditWindowInput,
    EmbedInput,
    RestoreLedgerInput,
    ServeContextInput,
    SessionRef,
    StoreMessagesInput,
    UncompactSessionInput,
)
from memory.audit import ServedContext, window_digest
from memory.compaction import WindowState, window_tokens
from memory.models import CompactionRecord, ContextWindow, Message, ToolCall, content_hash
from memory.policy import CompactionPolicy
from memory.store.store import Store
from memory.summarizer import SummaryResult
from tests.activities.loopback import anthropic_message, loopback

TEXTS = ["Order 4711 was shipped to 12 Baker Street, London, on May 3.",
         "The parcel is stuck in Leeds; we decided to resend it by express.",
         "The refund of 10 EUR was approved on Friday.",
         "Melanie likes painting sunrises."]
FACTS = [f"Fact {i}: the parcel {i} was rerouted to depot {i}." for i in range(12)]
POLICY = CompactionPolicy(context_window=256, preserve_recent=1)


@pytest.fixture(autouse=True)
def _untimed_embedding_passes(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests count batches, not seconds: an embedding pass stops at the first batch past
    EMBED_SECONDS, so a machine ten times slower than usual would stop them early. The test of
    that bound sets its own."""
    monkeypatch.setattr("activities.ingest.EMBED_SECONDS", 600.0)


def _session() -> str:
    return f"a-{uuid.uuid4()}"


def _messages(texts: Sequence[str] = TEXTS, prefix: str = "m") -> tuple[Message, ...]:
    return tuple(Message(id=f"{prefix}{i}", role="user", content=t) for i, t in enumerate(texts))


def _store_input(session: str, messages: Sequence[Message] | None = None) -> StoreMessagesInput:
    return StoreMessagesInput(tenant="acme", session=session,
                              messages=tuple(_messages() if messages is None else messages))


def _compact(session: str, head: int, **kwargs: object) -> CompactSessionInput:
    return CompactSessionInput.model_validate(
        {"tenant": "acme", "session": session, "expected_head": head, "policy": POLICY,
         "trigger": "manual", **kwargs})


async def _record(store: Store, session: str, record_id: str) -> CompactionRecord:
    return next(r for r in await store.ledger("acme", session) if r.id == record_id)


# -- appending and indexing --------------------------------------------------------------------
async def test_store_messages_is_idempotent_and_refuses_changed_content(
    activities: ConversationActivities, store: Store
) -> None:
    env = ActivityEnvironment()
    session = _session()
    opened = await env.run(activities.open_session, SessionRef(tenant="acme", session=session))
    assert (opened.next_seq, opened.ledger_head, opened.window_tokens) == (0, 0, 0)
    first = await env.run(activities.store_messages, _store_input(session))
    second = await env.run(activities.store_messages, _store_input(session))
    assert (first.appended, first.duplicates, first.total) == (4, 0, 4)
    assert (second.appended, second.duplicates, second.total) == (0, 4, 4)
    assert first.cursors.next_seq == 4 and first.cursors.window_tokens > 0
    assert await env.run(activities.open_session,
                         SessionRef(tenant="acme", session=session)) == second.cursors

    edited = (Message(id="m9", role="user", content="new"),
              Message(id="m1", role="user", content="The parcel arrived after all."))
    with pytest.raises(ApplicationError) as info:
        await env.run(activities.store_messages, _store_input(session, edited))
    assert info.value.type == "InvalidInputError" and info.value.non_retryable
    assert "messages[1].id" in info.value.message and "'m1'" in info.value.message
    orphan = (Message(id="t0", role="tool", tool_call_id="call-x", content="42"),)
    with pytest.raises(ApplicationError) as info:
        await env.run(activities.store_messages, _store_input(session, orphan))
    assert info.value.type == "InvalidInputError" and info.value.non_retryable
    assert "messages[0].tool_call_id" in info.value.message
    assert [m.content for m in await store.all_messages("acme", session)] == TEXTS


async def test_a_restamped_turn_stored_by_an_overlapping_call_is_a_duplicate(
    activities: ConversationActivities, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two generate(id=X) calls at once: the second read before the first one's append
    committed, so it saw no stored copy and appended its own stamp. That conflict must end as
    a duplicate of the copy now stored, not as "already appended with other content"."""
    env = ActivityEnvironment()
    session = _session()
    first = Message(id="turn-1", role="user", content="Where is my parcel?",
                    created_at=datetime(2026, 12, 6, 4, 0, tzinfo=UTC))
    await env.run(activities.store_messages, _store_input(session, (first,)))
    real = store.get_messages
    reads = 0

    async def read_too_early(tenant: str, session_id: str, ids: Sequence[str]) -> list[Message]:
        nonlocal reads
        reads += 1
        return [] if reads == 1 else await real(tenant, session_id, ids)

    monkeypatch.setattr(store, "get_messages", read_too_early)
    retried = first.model_copy(update={"created_at": datetime(2026, 12, 6, 4, 1, tzinfo=UTC)})
    result = await env.run(activities.store_messages, StoreMessagesInput(
        tenant="acme", session=session, messages=(retried,), restamped=True))
    assert (result.appended, result.duplicates, reads) == (0, 1, 2)
    # Another question under the same id is still refused, naming `id` (generate's field).
    other = retried.model_copy(update={"content": "Cancel my order."})
    with pytest.raises(ApplicationError) as info:
        await env.run(activities.store_messages, StoreMessagesInput(
            tenant="acme", session=session, messages=(other,), restamped=True))
    assert info.value.type == "InvalidInputError" and info.value.message.startswith("id: ")
    assert [(m.content, m.created_at) for m in await store.all_messages("acme", session)] == [
        (first.content, first.created_at)]


async def test_embed_messages_embeds_only_its_range_and_is_idempotent(
    activities: ConversationActivities, store: Store, embedder: LocalEmbedder
) -> None:
    env = ActivityEnvironment()
    beats: list[object] = []
    env.on_heartbeat = lambda *args: beats.append(args)
    session = _session()
    extra = ("Caroline is researching adoption agencies.",
             "The deploy failed with error E1234.")
    await env.run(activities.store_messages, _store_input(session, _messages([*TEXTS, *extra])))
    first = await env.run(activities.embed_messages,
                          EmbedInput(tenant="acme", session=session, start=0, stop=4))
    # A bare heartbeat after each indexing statement, then progress after each embedded batch.
    assert first.embedded == 4 and beats == [(), (4,)]
    assert [i for i, *_ in await store.unembedded("acme", session, 0, 6)] == ["m4", "m5"]
    assert (await store.cursors("acme", session)).embedded_seq == 4
    beats.clear()
    again = await env.run(activities.embed_messages,
                          EmbedInput(tenant="acme", session=session, start=0, stop=4))
    assert again.embedded == 0 and beats == [()]
    (q,) = await embedder.embed([TEXTS[2]])
    assert (await store.exact_neighbours("acme", session, q, k=1)) == ["m2"]
    rest = await env.run(activities.embed_messages,
                         EmbedInput(tenant="acme", session=session, start=0, stop=99))
    assert rest.embedded == 2
    assert (await store.cursors("acme", session)).embedded_seq == 6
    assert await store.unembedded("acme", session, 0, 6) == []


class _FailingEmbedder:
    """The real embedder until `fail_on` calls have been made; then a provider error."""

    def __init__(self, inner: LocalEmbedder, fail_on: int) -> None:
        self.inner, self.fail_on, self.calls = inner, fail_on, 0
        self.name, self.dim = inner.name, inner.dim

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        self.calls += 1
        if self.calls >= self.fail_on:
            raise RuntimeError("embedder down")
        return await self.inner.embed(list(texts))


class _FailingStore(Store):
    async def set_embeddings(self, tenant: str, session: str,
                             vectors: Sequence[tuple[str, Sequence[float]]]) -> None:
        raise RuntimeError("store down")


async def test_a_failed_batch_keeps_the_batch_being_stored_and_reports_both_errors(
    activities: ConversationActivities, store: Store, embedder: LocalEmbedder,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Batch i is stored while batch i+1 is embedded: if that embedding fails, batch i is
    still stored (not cancelled), and a store failure is logged rather than lost."""
    env = ActivityEnvironment()
    session = _session()
    count = EMBED_BATCH + 6
    await env.run(activities.store_messages, _store_input(
        session, _messages([f"Line {i} about parcel {i}." for i in range(count)])))
    flaky = ConversationActivities(store, _FailingEmbedder(embedder, fail_on=2))
    with pytest.raises(RuntimeError, match="embedder down"):
        await env.run(flaky.embed_messages,
                      EmbedInput(tenant="acme", session=session, start=0, stop=count))
    assert len(await store.unembedded("acme", session, 0, count)) == count - EMBED_BATCH

    await env.run(activities.embed_messages,
                  EmbedInput(tenant="acme", session=session, start=0, stop=count))
    assert await store.unembedded("acme", session, 0, count) == []

    other = _session()  # the store fails on batch 0, then the embedder on batch 1
    await env.run(activities.store_messages, _store_input(
        other, _messages([f"Line {i} about depot {i}." for i in range(count)])))
    broken = ConversationActivities(_FailingStore(store.pool),
                                    _FailingEmbedder(embedder, fail_on=2))
    with pytest.raises(RuntimeError, match="embedder down"):
        await env.run(broken.embed_messages,
                      EmbedInput(tenant="acme", session=other, start=0, stop=count))
    assert "storing embeddings failed too: RuntimeError('store down')" in caplog.text
    assert len(await store.unembedded("acme", other, 0, count)) == count

    caplog.clear()  # a store error alone is raised, not also logged as a second one
    alone = ConversationActivities(_FailingStore(store.pool), embedder)
    with pytest.raises(RuntimeError, match="store down"):
        await env.run(alone.embed_messages,
                      EmbedInput(tenant="acme", session=other, start=0, stop=count))
    assert "failed too" not in caplog.text


async def test_embed_messages_works_in_batches(
    activities: ConversationActivities, store: Store
) -> None:
    env = ActivityEnvironment()
    beats: list[object] = []
    env.on_heartbeat = lambda *args: beats.append(args)
    session = _session()
    count = EMBED_BATCH + 6
    await env.run(activities.store_messages, _store_input(
        session, _messages([f"Line {i} about parcel {i}." for i in range(count)])))
    out = await env.run(activities.embed_messages,
                        EmbedInput(tenant="acme", session=session, start=0, stop=count))
    assert out.embedded == count and [b for b in beats if b] == [(EMBED_BATCH,), (count,)]
    assert (await store.cursors("acme", session)).embedded_seq == count


async def test_an_embedding_pass_past_its_time_stops_at_a_batch_and_says_where(
    activities: ConversationActivities, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A pass is time-bounded (a run due to continue as new waits for it while appends add to
    its history), yet embeds at least one batch; the next pass starts where it stopped."""
    monkeypatch.setattr("activities.ingest.EMBED_SECONDS", 0.0)
    env = ActivityEnvironment()
    session = _session()
    count = 2 * EMBED_BATCH + 6
    await env.run(activities.store_messages, _store_input(
        session, _messages([f"Line {i} about parcel {i}." for i in range(count)])))
    first = await env.run(activities.embed_messages,
                          EmbedInput(tenant="acme", session=session, start=0, stop=count))
    assert (first.embedded, first.reached) == (EMBED_BATCH, EMBED_BATCH)
    assert (await store.cursors("acme", session)).embedded_seq == EMBED_BATCH
    reached = first.reached
    while reached is not None and reached < count:
        step = await env.run(activities.embed_messages,
                             EmbedInput(tenant="acme", session=session, start=reached,
                                        stop=count))
        assert step.reached is not None and step.reached > reached
        reached = step.reached
    assert reached == count and await store.unembedded("acme", session, 0, count) == []


# -- compaction --------------------------------------------------------------------------------
async def test_compact_session_commits_once_and_a_retry_returns_the_same_record(
    activities: ConversationActivities, store: Store
) -> None:
    env = ActivityEnvironment()
    session = _session()
    await env.run(activities.store_messages, _store_input(session))
    out = await env.run(activities.compact_session, _compact(session, 0, focus="refund"))
    assert out.record_ids == ("c1",)
    assert out.cursors.ledger_head == 1 and out.tokens_after < out.tokens_before
    (record,) = await store.ledger("acme", session)
    assert record.covered_ids == ("m0", "m1", "m2") and record.trigger == "manual"
    assert record.summary is not None and record.summary.strategy == "extractive"
    assert "refund" in record.summary.content
    assert set(record.summary.quoted_ids) <= {"m0", "m1", "m2"}
    assert record.fallback is None and record.engine_version
    assert out.cursors.window_tokens == record.tokens_after
    loaded = await store.load_window("acme", session)
    assert [m.id for m in loaded.state.messages] == ["m3"]
    assert loaded.state.summaries == (record.summary,)
    # The retry of an attempt that committed: the same record, nothing new.
    retry = await env.run(activities.compact_session, _compact(session, 0, focus="refund"))
    assert retry.record_ids == ("c1",) and retry.cursors.ledger_head == 1
    assert await store.ledger("acme", session) == [record]
    events = await store.events("acme", session)
    assert [(e.kind, e.record_id) for e in events] == [("started", "c1"), ("completed", "c1")]
    # A head this activity never saw is a conflict, and it is not retried.
    with pytest.raises(ApplicationError) as info:
        await env.run(activities.compact_session, _compact(session, 5))
    assert info.value.type == "LedgerConflictError" and info.value.non_retryable
    assert await store.ledger("acme", session) == [record]


async def test_compact_session_does_nothing_when_the_policy_says_so(
    activities: ConversationActivities, store: Store
) -> None:
    env = ActivityEnvironment()
    session = _session()
    await env.run(activities.store_messages, _store_input(session))
    out = await env.run(activities.compact_session, _compact(session, 0, trigger="auto"))
    assert out.record_ids == () and out.cursors.ledger_head == 0
    assert await store.ledger("acme", session) == []
    assert await store.events("acme", session) == []


async def test_a_manual_compact_that_would_grow_the_window_is_not_committed(
    activities: ConversationActivities, store: Store
) -> None:
    """Five 'ok's under UUID ids: their summary's lines (id tail, role) cost more than they do.
    It used to commit a record that took the window from 30 to 33 tokens."""
    env = ActivityEnvironment()
    session = _session()
    short = tuple(Message(id=str(uuid.UUID(int=i + 1)), role="user", content="ok")
                  for i in range(6))
    await env.run(activities.store_messages, _store_input(session, short))
    before = await store.load_window("acme", session)
    out = await env.run(activities.compact_session, _compact(session, 0))
    assert out.record_ids == () and out.cursors.ledger_head == 0
    assert await store.ledger("acme", session) == []
    assert (await store.load_window("acme", session)).state == before.state
    *_, skipped = await store.events("acme", session)
    assert skipped.kind == "skipped" and skipped.error is not None
    assert "would not shrink the window" in skipped.error
    assert skipped.tokens_after is not None and skipped.tokens_after >= skipped.tokens_before


class _Recording:
    """A summarizer that records what it was given (the provider is not what is tested)."""

    name = "recording"

    def __init__(self) -> None:
        self.seen: list[Message] = []

    async def summarize(self, messages: Sequence[Message], max_tokens: int,
                        focus: str | None = None) -> SummaryResult:
        self.seen.extend(messages)
        return SummaryResult(text="Decisions: none.", strategy="abstractive", model="rec")


async def test_the_summarizer_reads_large_bodies_in_full(
    store: Store, embedder: LocalEmbedder
) -> None:
    summarizer = _Recording()
    acts = ConversationActivities(store, embedder, summarizer)
    env = ActivityEnvironment()
    session = _session()
    body = "The parcel went to Leeds. " * 4000 + "The courier lost the key in Hull."
    messages = (Message(id="big", role="user", content=body), *_messages())
    await env.run(acts.store_messages, _store_input(session, messages))
    out = await env.run(acts.compact_session, _compact(session, 0))
    assert out.record_ids == ("c1",)
    assert [m.id for m in summarizer.seen] == ["big", "m0", "m1", "m2"]
    assert summarizer.seen[0].content == body
    record = await _record(store, session, "c1")
    assert (record.strategy, record.model, record.fallback) == ("abstractive", "rec", None)


class _Blank(_Recording):
    """A summarizer of one's own that answers with nothing."""

    async def summarize(self, messages: Sequence[Message], max_tokens: int,
                        focus: str | None = None) -> SummaryResult:
        return SummaryResult(text="  ", strategy="abstractive", model="blank")


async def test_an_empty_summary_from_any_summarizer_falls_back_to_extractive(
    store: Store, embedder: LocalEmbedder
) -> None:
    acts = ConversationActivities(store, embedder, _Blank())
    env = ActivityEnvironment()
    session = _session()
    await env.run(acts.store_messages, _store_input(session))
    out = await env.run(acts.compact_session, _compact(session, 0))
    record = await _record(store, session, out.record_ids[0])
    assert record.strategy == "extractive" and record.summary and record.summary.content.strip()
    assert record.fallback == ("extractive: recording rejected (the model returned an empty "
                               "summary (no stop reason))")


async def test_the_summarizer_falls_back_to_extractive_and_says_why(
    store: Store, embedder: LocalEmbedder
) -> None:
    with loopback() as server:
        acts = ConversationActivities(
            store, embedder, AnthropicSummarizer("k", "claude-test", base_url=server.url),
            max_summarizer_failures=2)
        env = ActivityEnvironment()

        async def compact() -> tuple[str, CompactionRecord]:
            session = _session()
            await env.run(acts.store_messages, _store_input(session))
            out = await env.run(acts.compact_session, _compact(session, 0))
            return session, await _record(store, session, out.record_ids[0])

        server.fail(400)
        _, rejected = await compact()
        assert rejected.strategy == "extractive" and rejected.summary is not None
        assert rejected.fallback == "extractive: claude-test rejected (provider rejected the " \
                                    "request: HTTP 400)"

        # An empty summary (truncation, a content filter) would stand for the span with
        # nothing: it is a refusal, and the span gets an extractive summary instead.
        server.reply(anthropic_message(" "))
        _, empty = await compact()
        assert empty.strategy == "extractive" and empty.summary and empty.summary.content
        assert empty.fallback == "extractive: claude-test rejected (the model returned an " \
                                 "empty summary (stop reason 'end_turn'))"

        server.fail(500)  # an outage: retried by Temporal, nothing committed meanwhile
        session = _session()
        await env.run(acts.store_messages, _store_input(session))
        with pytest.raises(ApplicationError) as info:
            await env.run(acts.compact_session, _compact(session, 0))
        assert not info.value.non_retryable
        assert await store.ledger("acme", session) == []
        assert (await store.cursors("acme", session)).ledger_head == 0
        failed = (await store.events("acme", session))[-1]
        assert failed.kind == "failed" and failed.error and "HTTP 500" in failed.error

        server.reply(anthropic_message("Decisions: resend [m1]."))
        out = await env.run(acts.compact_session, _compact(session, 0))
        ok = await _record(store, session, out.record_ids[0])
        assert ok.summary is not None
        assert (ok.summary.content, ok.fallback, ok.model, ok.strategy) == (
            "Decisions: resend [m1].", None, "claude-test", "abstractive")

        env.info = dataclasses.replace(env.info, attempt=3)
        _, exhausted = await compact()
        assert exhausted.fallback == "extractive: claude-test failed 2 times"
        assert exhausted.strategy == "extractive"
        assert len(server.requests) == 4  # the third-attempt fallback did not call the provider
        # Where earlier attempts recorded their failure, the fallback names the last one.
        ok_calls = len(server.requests)
        server.fail(503)
        env.info = dataclasses.replace(env.info, attempt=1)
        session = _session()
        await env.run(acts.store_messages, _store_input(session))
        with pytest.raises(ApplicationError):
            await env.run(acts.compact_session, _compact(session, 0))
        env.info = dataclasses.replace(env.info, attempt=3)
        out = await env.run(acts.compact_session, _compact(session, 0))
        named = await _record(store, session, out.record_ids[0])
        assert named.fallback == "extractive: claude-test failed 2 times (last: " \
                                 "ProviderUnavailable: provider unavailable: HTTP 503)"
        assert len(server.requests) == ok_calls + 1
        # Another activity at the same ledger head (its attempts died with a worker and
        # recorded nothing) must not borrow an older activity's failure as its reason.
        session = _session()
        await env.run(acts.store_messages, _store_input(session))
        env.info = dataclasses.replace(env.info, attempt=1)
        with pytest.raises(ApplicationError):
            await env.run(acts.compact_session, _compact(session, 0))
        env.info = dataclasses.replace(env.info, attempt=3, activity_id="a-later-one")
        out = await env.run(acts.compact_session, _compact(session, 0))
        unnamed = await _record(store, session, out.record_ids[0])
        assert unnamed.fallback == "extractive: claude-test failed 2 times"


async def test_uncompact_restores_the_originals_and_refuses_what_it_cannot_undo(
    activities: ConversationActivities, store: Store
) -> None:
    env = ActivityEnvironment()
    session = _session()
    big = Message(id="big", role="user", content="depot " * 20_000)
    await env.run(activities.store_messages, _store_input(session, (big, *_messages())))
    before = await store.load_window("acme", session)
    await env.run(activities.compact_session, _compact(session, 0))
    assert (await store.load_window("acme", session)).state != before.state

    out = await env.run(activities.uncompact_session, UncompactSessionInput(
        tenant="acme", session=session, expected_head=1, record_id="c1"))
    assert out.record_ids == ("u2",) and out.cursors.ledger_head == 2
    after = await store.load_window("acme", session)
    assert after.state == before.state
    assert out.cursors.window_tokens == window_tokens(before.state)
    undo = await _record(store, session, "u2")
    assert (undo.trigger, undo.undoes) == ("undo", "c1")
    retry = await env.run(activities.uncompact_session, UncompactSessionInput(
        tenant="acme", session=session, expected_head=1, record_id="c1"))
    assert retry.record_ids == ("u2",)

    for record_id, problem in (("c1", "already undone"), ("c9", "no compaction"),
                               ("u2", "is an undo of c1")):
        with pytest.raises(ApplicationError) as info:
            await env.run(activities.uncompact_session, UncompactSessionInput(
                tenant="acme", session=session, expected_head=2, record_id=record_id))
        assert info.value.type == "InvalidInputError" and info.value.non_retryable
        assert info.value.message.startswith("record_id: ") and problem in info.value.message
    assert [r.id for r in await store.ledger("acme", session)] == ["c1", "u2"]


async def test_edit_window_pops_the_newest_unit_or_clears_and_can_be_undone(
    activities: ConversationActivities, store: Store
) -> None:
    env = ActivityEnvironment()
    session = _session()
    call = Message(id="a0", role="assistant", content="",
                   tool_calls=(ToolCall(id="call-1", name="track"),))
    result = Message(id="t0", role="tool", tool_call_id="call-1", content="In Leeds.")
    system = Message(id="sys", role="system", content="You help with parcels.")
    await env.run(activities.store_messages,
                  _store_input(session, (system, *_messages(), call, result)))
    before = await store.load_window("acme", session)

    def edit(head: int, kind: str) -> EditWindowInput:
        return EditWindowInput.model_validate(
            {"tenant": "acme", "session": session, "expected_head": head, "kind": kind})

    popped = await env.run(activities.edit_window, edit(0, "pop"))
    assert popped.record_ids == ("p1",)
    assert (await _record(store, session, "p1")).covered_ids == ("a0", "t0")  # the whole unit
    assert [m.id for m in (await store.load_window("acme", session)).state.messages] == [
        "sys", "m0", "m1", "m2", "m3"]
    assert (await env.run(activities.edit_window, edit(0, "pop"))).record_ids == ("p1",)
    cleared = await env.run(activities.edit_window, edit(1, "clear"))
    assert cleared.record_ids == ("x2",)
    assert (await store.load_window("acme", session)).state == WindowState()
    assert cleared.cursors.window_tokens == 0
    assert await store.count("acme", session) == 7  # the originals stay archived
    assert (await env.run(activities.edit_window, edit(2, "clear"))).record_ids == ()
    for head, record_id in ((2, "x2"), (3, "p1")):
        await env.run(activities.uncompact_session, UncompactSessionInput(
            tenant="acme", session=session, expected_head=head, record_id=record_id))
    assert (await store.load_window("acme", session)).state == before.state


async def _ledger_of_three(env: ActivityEnvironment, acts: ConversationActivities,
                           store: Store, messages: Sequence[Message]
                           ) -> tuple[str, list[CompactionRecord]]:
    session = _session()
    await env.run(acts.store_messages, _store_input(session, messages))
    await env.run(acts.compact_session, _compact(session, 0, preserve_recent=6))
    await env.run(acts.compact_session, _compact(session, 1, preserve_recent=2))
    await env.run(acts.uncompact_session, UncompactSessionInput(
        tenant="acme", session=session, expected_head=2, record_id="c2"))
    ledger = await store.ledger("acme", session)
    assert [r.id for r in ledger] == ["c1", "c2", "u3"]
    return session, ledger


async def test_restore_ledger_rebuilds_the_window_of_an_exported_session(
    activities: ConversationActivities, store: Store
) -> None:
    env = ActivityEnvironment()
    messages = _messages(FACTS)
    source, ledger = await _ledger_of_three(env, activities, store, messages)
    copy = _session()
    await env.run(activities.store_messages, _store_input(copy, messages))
    restore = RestoreLedgerInput(tenant="acme", session=copy, expected_head=0,
                                 records=tuple(ledger))
    out = await env.run(activities.restore_ledger, restore)
    assert out.record_ids == ("c1", "c2", "u3") and out.cursors.ledger_head == 3
    assert await store.ledger("acme", copy) == ledger
    original = await store.load_window("acme", source)
    assert (await store.load_window("acme", copy)).state == original.state
    assert out.cursors.window_tokens == (await store.cursors("acme", source)).window_tokens
    retry = await env.run(activities.restore_ledger, restore)  # idempotent
    assert retry.record_ids == ("c1", "c2", "u3")
    assert await store.ledger("acme", copy) == ledger

    # In parts, as a large export is restored: an undo whose target came in an earlier part
    # finds it in the store, and a record already stored is refused, naming it.
    parted = _session()
    await env.run(activities.store_messages, _store_input(parted, messages))
    await env.run(activities.restore_ledger, RestoreLedgerInput(
        tenant="acme", session=parted, expected_head=0, records=tuple(ledger[:2])))
    last = await env.run(activities.restore_ledger, RestoreLedgerInput(
        tenant="acme", session=parted, expected_head=2, records=(ledger[2],)))
    assert last.record_ids == ("u3",) and await store.ledger("acme", parted) == ledger
    with pytest.raises(ApplicationError, match=r"records\[0\]\.id: 'c1' is already in"):
        await env.run(activities.restore_ledger, RestoreLedgerInput(
            tenant="acme", session=parted, expected_head=3,
            records=(ledger[0].model_copy(update={"seq": 3}),)))


async def test_restore_ledger_is_all_or_nothing_and_names_the_field(
    activities: ConversationActivities, store: Store
) -> None:
    env = ActivityEnvironment()
    messages = _messages(FACTS)
    _, ledger = await _ledger_of_three(env, activities, store, messages)
    c1, c2, u3 = ledger
    # The copy's m7 differs from the export's: record 2 (c2 covers it) does not match.
    edited = tuple(m.model_copy(update={"content": "Fact 7: rerouted to Hull."})
                   if m.id == "m7" else m for m in messages)
    cases: list[tuple[Sequence[Message], tuple[CompactionRecord, ...], str]] = [
        (edited, (c1, c2, u3), "records[1].covered_hash"),
        (messages, (c1, c2.model_copy(update={"covered_hash": "0" * 64}), u3),
         "records[1].covered_hash"),
        (messages, (c1.model_copy(update={"seq": 4}), c2, u3), "records[0].seq"),
        (messages, (c1, c2.model_copy(update={"id": "c1"}), u3), "records[1].id"),
        (messages, (c1, c2.model_copy(update={"covered_ids": ("ghost",)}), u3),
         "records[1].covered_ids"),
        (messages, (c1, c2, u3.model_copy(update={"undoes": "c7"})), "records[2].undoes"),
    ]
    for copy_messages, records, field in cases:
        copy = _session()
        await env.run(activities.store_messages, _store_input(copy, copy_messages))
        before = await store.load_window("acme", copy)
        with pytest.raises(ApplicationError) as info:
            await env.run(activities.restore_ledger, RestoreLedgerInput(
                tenant="acme", session=copy, expected_head=0, records=records))
        assert info.value.type == "InvalidInputError" and info.value.non_retryable
        assert info.value.message.startswith(f"{field}: "), (field, info.value.message)
        assert await store.ledger("acme", copy) == []
        assert await store.load_window("acme", copy) == before
        assert (await store.cursors("acme", copy)).ledger_head == 0


# -- context and chat --------------------------------------------------------------------------
async def test_build_context_serves_within_budget_and_records_what_it_served(
    activities: ConversationActivities, store: Store
) -> None:
    env = ActivityEnvironment()
    session = _session()
    filler = _messages([f"Chat line {i}: nothing new about the weather today." for i in range(80)],
                       prefix="f")
    call = Message(id="a0", role="assistant", content="Checking the tracker.",
                   tool_calls=(ToolCall(id="call-1", name="track"),))
    result = Message(id="t0", role="tool", tool_call_id="call-1", content="Still in Leeds.")
    system = Message(id="sys", role="system", content="You help with parcels.")
    await env.run(activities.store_messages, _store_input(
        session, (system, *_messages(), *filler, call, result)))
    await env.run(activities.embed_messages,
                  EmbedInput(tenant="acme", session=session, start=0, stop=100))
    request = ContextRequest(query="where is the parcel stuck?", max_tokens=300)
    window = await env.run(activities.build_context, ServeContextInput(
        tenant="acme", session=session, request=request))
    assert 0 < window.tokens <= 300 and window.budget == 300
    assert window.messages[0].role == "system"
    assert "m1" in window.source_ids
    # m1 is far too old for the recent section of 300 tokens: retrieval brought it.
    assert [m.section for m in window.messages if "m1" in m.source_ids] == ["retrieved"]
    assert len(window.source_ids) < 87
    shown = [m.source_ids for m in window.messages]
    assert (("a0",) in shown) == (("t0",) in shown)  # a tool unit is whole or absent
    (served,) = [ServedContext.model_validate(r) for r in await store.served("acme", session)]
    assert served.digest == window_digest(window)
    assert (served.turn, served.ledger_seq, served.max_tokens) == (87, 0, 300)
    assert served.source_ids == tuple(window.source_ids) and served.tokens == window.tokens
    assert served.query == request.query and "m1" in [i for i, _ in served.retrieved]

    # After a compaction it serves the new version, summary included.
    await env.run(activities.compact_session, _compact(session, 0, preserve_recent=4))
    again = await env.run(activities.build_context, ServeContextInput(
        tenant="acme", session=session, request=ContextRequest(max_tokens=200)))
    assert again.tokens <= 200
    assert any(m.section == "summary" for m in again.messages)
    records = [ServedContext.model_validate(r) for r in await store.served("acme", session)]
    assert [r.ledger_seq for r in records] == [0, 1]
    assert records[1].digest == window_digest(again) and records[1].seq > records[0].seq


async def test_build_context_of_an_empty_session(activities: ConversationActivities,
                                                 store: Store) -> None:
    env = ActivityEnvironment()
    session = _session()
    window = await env.run(activities.build_context, ServeContextInput(
        tenant="acme", session=session, request=ContextRequest(query="anything", max_tokens=50)))
    assert (window.messages, window.tokens) == ((), 0)
    (served,) = await store.served("acme", session)
    assert (served["turn"], served["ledger_seq"]) == (0, 0)


async def test_chat_needs_a_model(activities: ConversationActivities) -> None:
    env = ActivityEnvironment()
    with pytest.raises(ApplicationError, match="LONGTHREAD_CHAT_PROVIDER") as info:
        await env.run(activities.complete_chat, ChatInput(
            window=ContextWindow(messages=(), tokens=0, budget=10)))
    assert info.value.non_retryable
    assert info.value.type == "NoChatModel"
    with pytest.raises(ApplicationError, match="LONGTHREAD_CHAT_PROVIDER") as info:
        await env.run(activities.chat_ready, SessionRef(tenant="acme", session="s"))
    assert info.value.type == "NoChatModel"


def test_every_spec_has_one_activity(activities: ConversationActivities) -> None:
    names = sorted(getattr(f, "__temporal_activity_definition").name for f in activities.all())
    assert names == sorted(spec.name for spec in specs.ALL)
    assert {"open_session", "store_messages", "embed_messages", "compact_session",
            "uncompact_session", "restore_ledger", "build_context", "complete_chat"} <= set(names)


def test_a_decorator_above_the_wrong_method_fails_at_registration() -> None:
    class Misdecorated(ConversationActivities):
        @activity.defn(name=specs.OPEN_SESSION.name)
        async def aclose(self) -> None:
            """The mistake of 7f1d2d0: open_session's decorator sat above this method."""

    with pytest.raises(TypeError, match="'aclose' is registered as activity 'open_session'"):
        object.__new__(Misdecorated).all()  # registration reads the class only

    class Missing(ConversationActivities):
        edit_window = None  # type: ignore[assignment]

    with pytest.raises(TypeError, match=r"no activity method for \['edit_window'\]"):
        object.__new__(Missing).all()

    class Unlisted(ConversationActivities):
        @activity.defn(name="prune")
        async def prune(self) -> None:
            """An activity no spec names: the workflow has no way to call it."""

    with pytest.raises(TypeError, match=r"activities \['prune'\] have no spec"):
        object.__new__(Unlisted).all()


async def test_an_abstractive_summarizer_writes_the_merges_too(
    store: Store, embedder: LocalEmbedder
) -> None:
    """A user test: the extractive merge cut a model's fact line to one clause ("customer
    Caroline Ortiz" of "TASK: make refunds idempotent, ticket PAY-4711, customer Caroline
    Ortiz"). The model now condenses its own summaries; if it fails, the extractive merge
    stands and the record says why."""
    policy = POLICY.model_copy(update={"hierarchy_fanout": 2})
    with loopback() as server:
        acts = ConversationActivities(
            store, embedder, AnthropicSummarizer("k", "claude-test", base_url=server.url))
        env = ActivityEnvironment()

        async def three_compactions(merge_reply: dict[str, Any] | None) -> CompactionRecord:
            session = _session()
            for n, prefix in enumerate("abc"):
                await env.run(acts.store_messages, _store_input(session, _messages(prefix=prefix)))
                server.reply(anthropic_message(f"TASK {n}: make refunds idempotent, ticket "
                                               f"PAY-471{n}, order 9981{n} [{prefix}1]."))
                if n == 2:
                    if merge_reply is None:
                        server.fail(400)
                    else:
                        server.reply(merge_reply)
                out = await env.run(acts.compact_session, _compact(
                    session, n, policy=policy, preserve_recent=1))
            return await _record(store, session, out.record_ids[0])

        merged = "TASKS 0-1: make refunds idempotent, tickets PAY-4710 and PAY-4711, orders " \
                 "99810 and 99811."
        record = await three_compactions(anthropic_message(merged))
        assert record.merged_summary is not None and record.fallback is None
        assert record.merged_summary.merges == ("s1", "s2")
        assert record.merged_summary.content == merged
        assert record.merged_summary.strategy == "abstractive-hierarchical"
        asked = server.requests[-1]["json"]["messages"][0]["content"]
        assert "PAY-4710" in asked and "PAY-4711" in asked and '"id": "s1"' in asked

        record = await three_compactions(None)  # the merge refused: the leaf still stands
        assert record.summary is not None and record.summary.strategy == "abstractive"
        assert record.merged_summary is not None
        assert record.merged_summary.strategy == "extractive-hierarchical"
        assert record.fallback is not None and record.fallback.startswith(
            "merge extractive: claude-test failed (")


async def test_restore_ledger_takes_a_ledger_hashed_in_another_time_zone(
    activities: ConversationActivities, store: Store
) -> None:
    """An export from a database whose session zone was Berlin: its covered hashes are over
    times written +01:00 / +02:00, while this archive reads them in UTC. The same instants,
    so the copy restores (it was refused before session 32); an edited message still is not."""
    env = ActivityEnvironment()
    stamps = [datetime(2024, 1 + i % 12, 15, 9, 0, tzinfo=UTC) for i in range(len(FACTS))]
    messages = tuple(m.model_copy(update={"created_at": at})
                     for m, at in zip(_messages(FACTS), stamps, strict=True))
    _, ledger = await _ledger_of_three(env, activities, store, messages)
    berlin = ZoneInfo("Europe/Berlin")
    shown = {m.id: m.model_copy(update={"created_at": m.created_at.astimezone(berlin)})
             for m in messages if m.created_at is not None}
    exported = tuple(r if r.trigger == "undo" else r.model_copy(update={
        "covered_hash": content_hash([shown[i] for i in r.covered_ids])}) for r in ledger[:2])
    assert [r.covered_hash for r in exported] != [r.covered_hash for r in ledger[:2]]
    copy = _session()
    await env.run(activities.store_messages, _store_input(copy, messages))
    out = await env.run(activities.restore_ledger, RestoreLedgerInput(
        tenant="acme", session=copy, expected_head=0, records=exported))
    assert out.record_ids == ("c1", "c2")

    edited = tuple(m.model_copy(update={"content": "Fact 1: rerouted to Hull."})
                   if m.id == "m1" else m for m in messages)
    other = _session()
    await env.run(activities.store_messages, _store_input(other, edited))
    with pytest.raises(ApplicationError, match=r"records\[0\]\.covered_hash: "):
        await env.run(activities.restore_ledger, RestoreLedgerInput(
            tenant="acme", session=other, expected_head=0, records=exported))
    assert await store.ledger("acme", other) == []
