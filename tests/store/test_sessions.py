"""A session's conversation in Postgres: idempotent appends, cursors, atomic commits of a ledger
record with its window version, and the window read back (in full, or the newest part)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence

import psycopg
import pytest

from memory.compaction import (
    WindowState,
    apply_record,
    compose_record,
    plan_compaction,
    window_tokens,
)
from memory.errors import InvalidInputError, LedgerConflictError
from memory.models import CompactionEvent, CompactionRecord, Message, Summary, ToolCall
from memory.policy import CompactionPolicy
from memory.store.sessions import PAGE_ROWS, LoadedWindow
from memory.store.store import Store
from memory.tokens import default_counter
from memory.window import by_reference, recent_slice

POLICY = CompactionPolicy(context_window=256, preserve_recent=3)


def _session() -> str:
    return f"s-{uuid.uuid4()}"


def _user(i: int, text: str | None = None) -> Message:
    return Message(id=f"m{i}", role="user",
                   content=text or f"Note {i}: the parcel is in depot {i}.")


def _tokens(messages: Sequence[Message]) -> int:
    counter = default_counter()
    return sum(counter.count_message(m.role, m.content) for m in messages)


def _compaction(loaded: LoadedWindow, record_id: str, preserve_recent: int = 3,
                summary_text: str | None = "Summary: parcels in depots."
                ) -> tuple[CompactionRecord, WindowState]:
    plan = plan_compaction(loaded.state, POLICY, force=True, preserve_recent=preserve_recent)
    assert plan is not None
    summary = None if summary_text is None else Summary(
        id=f"s-{record_id}", level=1, content=summary_text, covers=plan.covered_ids)
    window, record = compose_record(loaded.state, plan, record_id=record_id,
                                    seq=loaded.version, summary=summary, strategy="extractive")
    return record, window


async def _count(store: Store, tenant: str, table: str, session: str) -> int:
    async with store.scoped(tenant) as conn:
        cur = await conn.execute(f"SELECT count(*) AS n FROM {table} WHERE session = %s",
                                 (session,))
        row = await cur.fetchone()
    assert row is not None
    return int(row["n"])


# -- appends ---------------------------------------------------------------------------------
async def test_append_is_idempotent_by_id_and_assigns_seqs_in_order(store: Store) -> None:
    session = _session()
    first = await store.append_messages("acme", session, [_user(0), _user(1)])
    assert (first.appended, first.duplicates, first.cursors.next_seq) == (2, 0, 2)
    retry = await store.append_messages("acme", session, [_user(1), _user(2), _user(3)])
    assert (retry.appended, retry.duplicates, retry.cursors.next_seq) == (2, 1, 4)
    again = await store.append_messages("acme", session, [_user(0), _user(3)])
    assert (again.appended, again.duplicates, again.cursors.next_seq) == (0, 2, 4)
    seqs = await store.get_with_seq("acme", session, ["m3", "m2", "m1", "m0"])
    assert [(s, m.id) for s, m in seqs] == [(0, "m0"), (1, "m1"), (2, "m2"), (3, "m3")]
    assert await store.count("acme", session) == 4
    # The same ids in another session or another tenant are other messages.
    other = await store.append_messages("acme", _session(), [_user(0, "something else")])
    assert other.appended == 1
    elsewhere = await store.append_messages("beta", session, [_user(1, "beta's own m1")])
    assert (elsewhere.appended, elsewhere.cursors.next_seq) == (1, 1)


async def test_concurrent_appends_get_distinct_seqs_and_store_each_id_once(store: Store) -> None:
    session = _session()
    batches = [[_user(10 * b + i) for i in range(10)] for b in range(6)]
    outs = await asyncio.gather(*(store.append_messages("acme", session, b)
                                  for b in [*batches, *batches]))
    assert sum(o.appended for o in outs) == 60
    assert sum(o.duplicates for o in outs) == 60
    found = await store.get_with_seq("acme", session, [f"m{i}" for i in range(60)])
    assert sorted(s for s, _ in found) == list(range(60))
    for batch in batches:  # each batch took a contiguous run of seqs, in its own order
        seqs = [s for s, m in found if m in batch]
        assert seqs == list(range(seqs[0], seqs[0] + 10))
    assert (await store.cursors("acme", session)).next_seq == 60


async def test_a_known_id_with_other_content_is_refused_and_nothing_is_stored(
    store: Store,
) -> None:
    session = _session()
    await store.append_messages("acme", session, [_user(0), _user(1)])
    before = await store.cursors("acme", session)
    batch = [_user(2), _user(1, "an edited body"), _user(3)]
    with pytest.raises(InvalidInputError) as info:
        await store.append_messages("acme", session, batch)
    assert info.value.field == "messages[1].id"
    assert "'m1'" in info.value.problem
    assert await store.count("acme", session) == 2
    assert await store.get_messages("acme", session, ["m2", "m3"]) == []
    assert (await store.get_messages("acme", session, ["m1"]))[0] == _user(1)
    assert await store.cursors("acme", session) == before
    # Any other field counts as content too.
    renamed = _user(0).model_copy(update={"name": "Caroline"})
    with pytest.raises(InvalidInputError, match=r"messages\[0\]\.id"):
        await store.append_messages("acme", session, [renamed])
    with pytest.raises(InvalidInputError, match=r"messages\[1\]\.id: duplicate"):
        await store.append_messages("acme", session, [_user(5), _user(5)])
    assert await store.cursors("acme", session) == before


async def test_metadata_key_order_does_not_make_a_message_different(store: Store) -> None:
    session = _session()
    one = Message(id="m0", role="user", content="hi",
                  metadata={"a": 1, "b": {"x": 1, "y": [1, 2]}, "pinned": True})
    same = Message(id="m0", role="user", content="hi",
                   metadata={"pinned": True, "b": {"y": [1, 2], "x": 1}, "a": 1})
    assert list(one.metadata) != list(same.metadata)
    assert (await store.append_messages("acme", session, [one])).appended == 1
    again = await store.append_messages("acme", session, [same])
    assert (again.appended, again.duplicates) == (0, 1)
    differs = Message(id="m0", role="user", content="hi", metadata={"a": 2})
    with pytest.raises(InvalidInputError, match=r"messages\[0\]\.id"):
        await store.append_messages("acme", session, [differs])


async def test_tool_results_need_a_stored_call(store: Store) -> None:
    session = _session()
    call = Message(id="a0", role="assistant", content="",
                   tool_calls=(ToolCall(id="call-1", name="lookup"),
                               ToolCall(id="call-2", name="lookup")))
    # In one batch, the call comes before its result.
    out = await store.append_messages("acme", session, [
        _user(0), call, Message(id="t1", role="tool", tool_call_id="call-1", content="42")])
    assert out.appended == 3
    # In a later batch, the stored call still opens the result.
    late = Message(id="t2", role="tool", tool_call_id="call-2", content="43")
    assert (await store.append_messages("acme", session, [late])).appended == 1
    before = await store.cursors("acme", session)
    orphan = Message(id="t3", role="tool", tool_call_id="call-9", content="?")
    with pytest.raises(InvalidInputError) as info:
        await store.append_messages("acme", session, [_user(1), orphan])
    assert info.value.field == "messages[1].tool_call_id"
    assert await store.cursors("acme", session) == before
    assert await store.get_messages("acme", session, ["m1", "t3"]) == []
    # A call of another session or another tenant opens nothing here.
    for tenant, where in (("acme", _session()), ("beta", session)):
        stray = Message(id="t4", role="tool", tool_call_id="call-1", content="x")
        with pytest.raises(InvalidInputError, match=r"messages\[0\]\.tool_call_id"):
            await store.append_messages(tenant, where, [stray])
    # A result before its call in the same batch is an orphan too.
    with pytest.raises(InvalidInputError, match=r"messages\[0\]\.tool_call_id"):
        await store.append_messages("acme", session, [
            Message(id="t5", role="tool", tool_call_id="call-5", content="early"),
            Message(id="a5", role="assistant", content="",
                    tool_calls=(ToolCall(id="call-5", name="lookup"),))])


async def test_cursors_follow_appends_and_embeddings(store: Store) -> None:
    session = _session()
    fresh = await store.cursors("acme", session)
    assert fresh.model_dump() == {"next_seq": 0, "ledger_head": 0, "window_tokens": 0,
                                  "total_tokens": 0, "embedded_seq": 0, "rev": 0}
    big = Message(id="big", role="user", content="word " * 30_000)
    batch = [_user(0), _user(1), big, _user(3)]
    out = await store.append_messages("acme", session, batch)
    shown = [by_reference(m) for m in batch]
    assert out.cursors.next_seq == 4
    assert out.cursors.window_tokens == _tokens(shown)
    assert out.cursors.total_tokens == _tokens(batch)
    assert out.cursors.total_tokens > out.cursors.window_tokens
    assert out.cursors.embedded_seq == 0 and out.cursors.rev > fresh.rev
    assert await store.cursors("acme", session) == out.cursors
    # A duplicate adds nothing.
    dup = await store.append_messages("acme", session, [_user(1)])
    assert dup.cursors.model_copy(update={"rev": 0}) == out.cursors.model_copy(update={"rev": 0})

    todo = await store.unembedded("acme", session, 0, 2)
    assert todo == [("m0", _user(0).content, None, 0), ("m1", _user(1).content, None, 1)]
    await store.set_embeddings("acme", session, [(i, [0.1] * 384) for i, *_ in todo])
    assert (await store.cursors("acme", session)).embedded_seq == 2
    assert [i for i, *_ in await store.unembedded("acme", session, 0, 10)] == ["big", "m3"]
    await store.set_embeddings("acme", session, [("m3", [0.2] * 384)])
    assert (await store.cursors("acme", session)).embedded_seq == 2  # "big" is still waiting
    await store.set_embeddings("acme", session, [("big", [0.3] * 384)])
    assert (await store.cursors("acme", session)).embedded_seq == 4  # all: next_seq
    assert await store.unembedded("acme", session, 0, 10) == []
    more = await store.append_messages("acme", session, [_user(4)])
    assert (more.cursors.next_seq, more.cursors.embedded_seq) == (5, 4)


# -- commits -----------------------------------------------------------------------------------
async def test_commit_records_is_idempotent_by_seq(store: Store) -> None:
    session = _session()
    await store.append_messages("acme", session, [_user(i) for i in range(10)])
    loaded = await store.load_window("acme", session)
    record, window = _compaction(loaded, "c1")
    out = await store.commit_records("acme", session, 0, [(record, window)], loaded.next_base)
    assert (out.records, out.already, out.cursors.ledger_head) == ((record,), False, 1)
    assert out.cursors.window_tokens == window_tokens(window)
    # A retry of the same commit (timestamps may differ) returns what is stored.
    retried = record.model_copy(update={"duration_ms": 99.0})
    again = await store.commit_records("acme", session, 0, [(retried, window)],
                                       loaded.next_base)
    assert (again.records, again.already, again.cursors.ledger_head) == ((record,), True, 1)
    assert await store.ledger("acme", session) == [record]
    assert await _count(store, "acme", "window_versions", session) == 1


async def test_a_conflicting_commit_changes_nothing(store: Store) -> None:
    session = _session()
    await store.append_messages("acme", session, [_user(i) for i in range(10)])
    loaded = await store.load_window("acme", session)
    record, window = _compaction(loaded, "c1")
    # A second record with the wrong seq: the first one's rows must roll back with it.
    second = record.model_copy(update={"id": "c2", "seq": 5})
    with pytest.raises(LedgerConflictError, match="seq 5"):
        await store.commit_records("acme", session, 0, [(record, window), (second, window)],
                                   loaded.next_base)
    assert await store.ledger("acme", session) == []
    assert await _count(store, "acme", "window_versions", session) == 0
    assert (await store.cursors("acme", session)).ledger_head == 0
    assert await store.load_window("acme", session) == loaded
    # A head that is not the expected one, with other record ids: refused, unchanged.
    with pytest.raises(LedgerConflictError, match="at 0, not 1"):
        await store.commit_records("acme", session, 1, [(record.model_copy(update={"seq": 1}),
                                                         window)], loaded.next_base)
    await store.commit_records("acme", session, 0, [(record, window)], loaded.next_base)
    before = await store.cursors("acme", session)
    other = record.model_copy(update={"id": "c1-other"})
    with pytest.raises(LedgerConflictError, match="at 1, not 0"):
        await store.commit_records("acme", session, 0, [(other, window)], loaded.next_base)
    assert await store.ledger("acme", session) == [record]
    assert await _count(store, "acme", "window_versions", session) == 1
    assert await store.cursors("acme", session) == before


async def test_load_window_after_a_commit_is_the_applied_window_plus_what_came_since(
    store: Store,
) -> None:
    session = _session()
    system = Message(id="sys", role="system", content="You are a courier assistant.")
    big = Message(id="big", role="user", content="depot " * 20_000)
    await store.append_messages("acme", session, [system, *(_user(i) for i in range(8)), big])
    loaded = await store.load_window("acme", session)
    assert (loaded.version, loaded.next_base, loaded.turn) == (0, 10, 10)
    assert loaded.state.messages[-1] == by_reference(big)
    record, window = _compaction(loaded, "c1", preserve_recent=3)
    assert apply_record(loaded.state, record) == window
    await store.commit_records("acme", session, 0, [(record, window)], loaded.next_base)
    assert await store.load_window("acme", session) == LoadedWindow(
        version=1, state=window, next_base=10, turn=10,
        order={m.id: n for n, m in enumerate([system, *(_user(i) for i in range(8)), big])
               if m.id not in record.covered_ids})

    later = [_user(i) for i in range(20, 23)]
    out = await store.append_messages("acme", session, later)
    assert out.cursors.window_tokens == window_tokens(window) + _tokens(later)
    after = await store.load_window("acme", session)
    assert after.state == WindowState(summaries=window.summaries,
                                      messages=(*window.messages, *later))
    assert (after.version, after.next_base, after.turn) == (1, 13, 13)
    assert [after.order[m.id] for m in later] == [10, 11, 12]
    # A second compaction on top: its version keeps the tail appended since.
    record2, window2 = _compaction(after, "c2", preserve_recent=1)
    out2 = await store.commit_records("acme", session, 1, [(record2, window2)],
                                      after.next_base)
    assert out2.cursors.window_tokens == window_tokens(window2)
    assert (await store.load_window("acme", session)).state == window2
    assert await store.ledger("acme", session) == [record, record2]
    # Parts of it, by seq range and by id (replay, a retried activity, compact()'s answer).
    assert await store.ledger("acme", session, stop=1) == [record]
    assert await store.ledger("acme", session, start=1) == [record2]
    assert await store.ledger("acme", session, start=1, stop=1) == []
    assert await store.ledger("acme", session, ids=["c2", "c9"]) == [record2]
    assert await store.ledger("acme", session, ids=[]) == []
    assert await store.ledger("other", session, ids=["c1"]) == []
    assert await store.ledger_length("acme", session) == 2
    assert await store.ledger_length("acme", "no-such-session") == 0


async def test_compaction_events_are_kept_in_order(store: Store) -> None:
    session = _session()
    events = [CompactionEvent(kind="started", record_id="c1", level="medium", reason="r",
                              tokens_before=90),
              CompactionEvent(kind="completed", record_id="c1", level="medium", reason="r",
                              tokens_before=90, tokens_after=30, ratio=3.0, duration_ms=4.0)]
    for event in events:
        await store.add_event("acme", session, event)
    assert await store.events("acme", session) == events
    assert await store.events("acme", session, limit=1) == events[1:]
    assert await store.events("beta", session) == []


# -- reading the newest part -------------------------------------------------------------------
def _recent(messages: Sequence[Message], budget: int) -> list[Message]:
    return recent_slice(messages, budget)


def _systems(loaded: LoadedWindow) -> list[Message]:
    return [m for m in loaded.state.messages if m.role == "system"]


def _budget_starting_at(window: Sequence[Message], index: int) -> int:
    """A budget whose recent slice, before pulling in tool calls, starts at `index` of the
    window's non-system messages (see `slice_start`: it takes messages while it has used at most
    2·budget)."""
    rest = [m for m in window if m.role != "system"]
    after = _tokens(rest[index + 1:])
    budget = after // 2
    assert 2 * budget <= after < _tokens(rest[index:]) and budget > 0
    return budget


async def _assert_reads_match(store: Store, tenant: str, session: str,
                              budgets: Sequence[int]) -> None:
    full = await store.load_window(tenant, session)
    for budget in budgets:
        read = await store.read_window(tenant, session, budget)
        expected = _recent(full.state.messages, budget)
        assert _recent(read.state.messages, budget) == expected, budget
        assert _systems(read) == _systems(full)
        assert read.state.summaries == full.state.summaries
        assert (read.version, read.turn) == (full.version, full.turn)
        assert set(read.order.items()) <= set(full.order.items())


async def test_read_window_takes_exactly_the_recent_slice_of_the_full_window(
    store: Store,
) -> None:
    session = _session()
    system = Message(id="sys", role="system", content="Answer about parcels.")
    messages = [system, *(_user(i, f"Update {i}: " + "parcel news " * (1 + i % 5))
                          for i in range(600))]
    await store.append_messages("acme", session, messages)
    budgets = [1, 7, 40, 200, 800, 1500, 4000, 9000, 40_000]
    await _assert_reads_match(store, "acme", session, budgets)
    small = await store.read_window("acme", session, 40)
    assert not small.complete and len(small.state.messages) <= PAGE_ROWS + 1
    assert (await store.read_window("acme", session, 40_000)).complete

    # After a compaction the window is summaries + kept messages + the tail since.
    loaded = await store.load_window("acme", session)
    record, window = _compaction(loaded, "c1", preserve_recent=300)
    await store.commit_records("acme", session, 0, [(record, window)], loaded.next_base)
    await store.append_messages("acme", session, [_user(i) for i in range(1000, 1200)])
    await _assert_reads_match(store, "acme", session, budgets)
    assert (await store.read_window("acme", session, 40_000)).state.summaries \
        == window.summaries


async def test_read_window_keeps_a_tool_call_whose_result_starts_the_page(
    store: Store,
) -> None:
    session = _session()
    filler = [_user(i) for i in range(300)]
    call = Message(id="call", role="assistant", content="Let me check.",
                   tool_calls=(ToolCall(id="t-1", name="track"), ToolCall(id="t-2", name="eta")))
    results = [Message(id="r1", role="tool", tool_call_id="t-1", content="In Leeds."),
               Message(id="r2", role="tool", tool_call_id="t-2", content="Friday.")]
    # The call lands just outside the first page read (the newest PAGE_ROWS messages), its
    # results inside it.
    tail = [_user(i) for i in range(400, 400 + PAGE_ROWS - 2)]
    await store.append_messages("acme", session, [*filler, call, *results, *tail])
    full = await store.load_window("acme", session)
    rest = list(full.state.messages)
    budgets = [_budget_starting_at(rest, rest.index(results[0])),
               _budget_starting_at(rest, rest.index(results[1])),
               _budget_starting_at(rest, rest.index(results[1]) + 1),
               _budget_starting_at(rest, rest.index(call))]
    for budget in budgets[:2]:
        sliced = _recent(rest, budget)
        assert sliced[0] == call and sliced[1:3] == results  # the unit is never cut
    await _assert_reads_match(store, "acme", session, budgets)
    read = await store.read_window("acme", session, budgets[0])
    assert "call" in read.order


# -- tenants -----------------------------------------------------------------------------------
async def test_the_session_tables_are_tenant_scoped(store: Store) -> None:
    session = _session()
    call = Message(id="a0", role="assistant", content="",
                   tool_calls=(ToolCall(id="call-b", name="vault"),))
    await store.append_messages("beta", session, [_user(i) for i in range(6)] + [call])
    loaded = await store.load_window("beta", session)
    record, window = _compaction(loaded, "c1", preserve_recent=1)
    await store.commit_records("beta", session, 0, [(record, window)], loaded.next_base)
    await store.add_event("beta", session, CompactionEvent(
        kind="started", record_id="c1", level="medium", reason="r", tokens_before=1))
    tables = ("sessions", "tool_calls", "window_versions", "summaries", "compaction_events")
    for table in tables:  # the rows exist, for beta
        assert await _count(store, "beta", table, session) == 1, table
    before = await store.cursors("beta", session)
    async with store.scoped("alpha") as conn:
        for table in tables:
            cur = await conn.execute(f"SELECT count(*) AS n FROM {table} WHERE tenant = 'beta'")
            assert await cur.fetchone() == {"n": 0}, table
        cur = await conn.execute("UPDATE sessions SET next_seq = 999, ledger_head = 7"
                                 " WHERE tenant = 'beta'")
        assert cur.rowcount == 0
    forged = {
        "sessions": "INSERT INTO sessions (tenant, session) VALUES ('beta', 'forged')",
        "tool_calls": "INSERT INTO tool_calls VALUES ('beta', 'forged', 'c', 'm')",
        "window_versions": "INSERT INTO window_versions (tenant, session, version, base_seq,"
                           " kept_ids, summary_ids, tokens) VALUES ('beta', 'forged', 1, 0,"
                           " '{}', '{}', 0)",
        "summaries": "INSERT INTO summaries (tenant, session, id, summary)"
                     " VALUES ('beta', 'forged', 's', '{}')",
        "compaction_events": "INSERT INTO compaction_events (tenant, session, event)"
                             " VALUES ('beta', 'forged', '{}')",
    }
    for table, statement in forged.items():
        with pytest.raises(psycopg.Error, match="row-level security"):
            async with store.scoped("alpha") as conn:
                await conn.execute(statement)
        assert await _count(store, "beta", table, "forged") == 0
    assert await store.cursors("beta", session) == before
    # Alpha's session of the same name is its own: empty, at zero.
    assert (await store.cursors("alpha", session)).model_dump() == {
        "next_seq": 0, "ledger_head": 0, "window_tokens": 0, "total_tokens": 0,
        "embedded_seq": 0, "rev": 0}
    assert (await store.read_window("alpha", session, 1000)).state == WindowState()
    assert await store.events("alpha", session) == []
