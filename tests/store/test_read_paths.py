"""The store's fast paths agree with the slow ones: read_window's one statement with its paged
reading, the cached summaries with the stored ones, one-INSERT appends with what was sent,
and a served record carries the seq it was given."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import psycopg
import pytest
from psycopg.rows import DictRow
from psycopg.types.json import Jsonb
from pydantic import ValidationError

from memory.audit import ServedContext
from memory.compaction import compose_record, plan_compaction
from memory.errors import InvalidInputError
from memory.models import CompactionRecord, Message, Summary, ToolCall, message_digest
from memory.policy import CompactionPolicy
from memory.store.db import open_pool
from memory.store.sessions import LoadedWindow
from memory.store.store import Store

POLICY = CompactionPolicy(context_window=256, preserve_recent=3)


def _session() -> str:
    return f"fast-{uuid.uuid4()}"


def _user(i: int, text: str | None = None, name: str | None = None) -> Message:
    return Message(id=f"m{i}", role="user", name=name,
                   content=text or f"Note {i}: the parcel is in depot {i}.")


async def _compact(store: Store, tenant: str, session: str, record_id: str,
                   preserve_recent: int = 3) -> None:
    loaded = await store.load_window(tenant, session)
    plan = plan_compaction(loaded.state, POLICY, force=True, preserve_recent=preserve_recent)
    assert plan is not None
    summary = Summary(id=f"s-{record_id}", level=1, content=f"Summary {record_id}.",
                      covers=plan.covered_ids, created_at=datetime(2024, 1, 2, tzinfo=UTC))
    window, record = compose_record(loaded.state, plan, record_id=record_id,
                                    seq=loaded.version, summary=summary, strategy="extractive")
    await store.commit_records(tenant, session, loaded.version, [(record, window)],
                               loaded.next_base)


def _same(fast: LoadedWindow, slow: LoadedWindow) -> None:
    assert fast.state == slow.state
    assert (fast.version, fast.turn, fast.next_base, fast.complete) == \
        (slow.version, slow.turn, slow.next_base, slow.complete)
    assert fast.order == slow.order


async def test_read_window_in_one_statement_matches_the_paged_read(store: Store) -> None:
    session = _session()
    system = Message(id="sys", role="system", content="Answer about parcels.")
    call = Message(id="call", role="assistant", content="Checking.",
                   tool_calls=(ToolCall(id="t-1", name="track"),))
    result = Message(id="res", role="tool", tool_call_id="t-1", content="In Leeds.")
    # A tool result whose call is far older than any small budget's bound: the one statement
    # cannot see the call, so read_window must fall back to pages and still hold the unit.
    messages = [system, *(_user(i, name=("Ann" if i % 2 else "Bob")) for i in range(200)),
                call, *(_user(i) for i in range(200, 260)), result,
                *(_user(i) for i in range(260, 270))]
    await store.append_messages("acme", session, messages)
    budgets = [1, 5, 40, 300, 2000, 40_000]
    for budget in budgets:
        _same(await store.read_window("acme", session, budget),
              await store._read_window_paged("acme", session, budget))
    await _compact(store, "acme", session, "c1", preserve_recent=20)
    await store.append_messages("acme", session, [_user(i) for i in range(300, 320)])
    for budget in budgets:
        _same(await store.read_window("acme", session, budget),
              await store._read_window_paged("acme", session, budget))


async def test_cached_summaries_follow_each_new_version(store: Store) -> None:
    session = _session()
    await store.append_messages("acme", session, [_user(i) for i in range(40)])
    assert (await store.read_window("acme", session, 500)).state.summaries == ()
    await _compact(store, "acme", session, "c1")
    first = await store.read_window("acme", session, 500)
    again = await store.read_window("acme", session, 500)  # from the cache this time
    assert first.state.summaries == again.state.summaries
    assert [s.id for s in first.state.summaries] == ["s-c1"]
    assert first.state.summaries == (await store.load_window("acme", session)).state.summaries
    await store.append_messages("acme", session, [_user(i) for i in range(40, 80)])
    await _compact(store, "acme", session, "c2")
    second = await store.read_window("acme", session, 500)
    assert second.version == first.version + 1
    assert second.state.summaries == (await store.load_window("acme", session)).state.summaries
    # Another tenant's session of the same name shares nothing with it.
    assert (await store.read_window("other", session, 500)).state.summaries == ()


async def test_one_insert_appends_store_every_field(store: Store) -> None:
    session = _session()
    naive = datetime(2023, 5, 8, 13, 56)
    sent = [
        Message(id="a", role="user", content="Hello ✓", name="Caroline",
                created_at=naive, metadata={"k": [1, {"x": None}], "ü": "é"}),
        Message(id="b", role="assistant", content="",
                tool_calls=(ToolCall(id="c1", name="look", arguments='{"q": 1}'),),
                created_at=datetime(2023, 5, 8, 14, 0, tzinfo=UTC)),
        Message(id="c", role="tool", tool_call_id="c1", content="found"),
    ]
    out = await store.append_messages("acme", session, sent)
    assert (out.appended, out.duplicates, out.cursors.next_seq) == (3, 0, 3)
    got = await store.get_with_seq("acme", session, ["a", "b", "c"])
    assert [seq for seq, _ in got] == [0, 1, 2]
    assert [message_digest(m) for _, m in got] == [message_digest(m) for m in sent]
    assert got[1][1].tool_calls == sent[1].tool_calls and got[0][1].metadata == sent[0].metadata
    # Re-sending is a no-op; a known id with other content is refused by its index.
    again = await store.append_messages("acme", session, [sent[0], _user(9)])
    assert (again.appended, again.duplicates, again.cursors.next_seq) == (1, 1, 4)
    with pytest.raises(InvalidInputError) as info:
        await store.append_messages("acme", session, [_user(10), sent[1].model_copy(
            update={"content": "changed"})])
    assert info.value.field == "messages[1].id"
    assert (await store.cursors("acme", session)).next_seq == 4


async def test_search_with_neighbours_in_one_statement(store: Store) -> None:
    session = _session()
    texts = ["We adopted a beagle named Biscuit.", "How old is he?", "Two years old.",
             "The weather is grey.", "Biscuit loves the beach."]
    await store.append_messages("acme", session, [_user(i, t) for i, t in enumerate(texts)])
    await store.set_embeddings("acme", session, [(f"m{i}", [1.0 if j == i else 0.0
                                                            for j in range(384)])
                                                 for i in range(len(texts))])
    vector = [1.0 if j == 0 else 0.0 for j in range(384)]
    plain = await store.search("acme", session, "beagle", vector, k=1)
    assert [h.message.id for h in plain] == ["m0"]
    around = await store.search("acme", session, "beagle", vector, k=1, neighbours=2)
    assert [h.message.id for h in around] == ["m0", "m1", "m2"]
    assert around[1].score == around[2].score == plain[0].score * 0.5


async def test_record_served_sets_the_seq_in_the_stored_record(store: Store) -> None:
    session = _session()
    await store.append_messages("acme", session, [_user(0)])
    served = ServedContext(seq=0, turn=1, query="q", max_tokens=100, tokens=10,
                           source_ids=("m0",), digest="d", ledger_seq=0,
                           retrieved=(("m0", 0.5),))
    first = await store.record_served("acme", session, served)
    second = await store.record_served("acme", session, served)
    assert second.seq > first.seq > 0
    stored = await store.served("acme", session)
    assert [ServedContext.model_validate(r) for r in stored] == [first, second]


async def test_a_connection_the_server_ended_is_never_handed_out(
    app_url: str, db: psycopg.AsyncConnection[DictRow]
) -> None:
    """The pool checks each connection before handing it out (an empty query), so one whose
    backend the server ended is replaced, never handed to a store call. A pool of its own, and
    only its backend is ended: the suite's shared pools are left alone."""
    pool = await open_pool(app_url, min_size=1, max_size=1)
    try:
        async with pool.connection() as conn:
            row = await (await conn.execute("SELECT pg_backend_pid() AS pid")).fetchone()
        assert row is not None
        ended = row["pid"]
        # With a timeout it waits (up to 10 s) until the backend has exited.
        await db.execute("SELECT pg_terminate_backend(%s, 10000)", (ended,))
        for _ in range(3):
            async with pool.connection() as conn:
                row = await (await conn.execute("SELECT pg_backend_pid() AS pid")).fetchone()
            assert row is not None and row["pid"] != ended
    finally:
        await pool.close()


async def test_one_statement_appends_refuse_and_count_as_the_checked_path(store: Store) -> None:
    """The same batches through `append_messages` (one statement) and `_append_checked`
    (checks in Python): the same outcomes, the same refusals naming the same field."""
    call = Message(id="call", role="assistant", content="",
                   tool_calls=(ToolCall(id="k1", name="look"), ToolCall(id="k2", name="eta")))
    batches: list[list[Message]] = [
        [_user(0), call],
        [Message(id="r1", role="tool", tool_call_id="k1", content="ok"), _user(1)],  # stored call
        [_user(2), _user(0)],  # a duplicate of a stored message
        [_user(3), _user(1, "changed")],  # a known id, other content
        [_user(4), Message(id="r9", role="tool", tool_call_id="k9", content="?")],  # orphan
        [Message(id="c2", role="assistant", content="", tool_calls=(ToolCall(id="k3",
                                                                              name="x"),)),
         Message(id="r3", role="tool", tool_call_id="k3", content="in batch")],
        [_user(5), _user(5)],  # a repeated id within the batch
        [_user(6, "x" * 70_000)],  # a body above the window's reference threshold
    ]
    fast_session, checked_session = _session(), _session()
    for batch in batches:
        outcomes: list[tuple[object, ...]] = []
        for append, session in ((store.append_messages, fast_session),
                                (store._append_checked, checked_session)):
            try:
                out = await append("acme", session, batch)
                outcomes.append((out.appended, out.duplicates, out.cursors.model_dump()))
            except InvalidInputError as exc:
                outcomes.append((exc.field, exc.problem))
        assert outcomes[0] == outcomes[1], batch
    fast = await store.all_messages("acme", fast_session)
    assert fast == await store.all_messages("acme", checked_session)
    assert [m.id for m in fast] == ["m0", "call", "r1", "m1", "m2", "c2", "r3", "m6"]


async def test_a_ledger_record_with_a_field_from_a_newer_version_is_still_read(
        store: Store, db: psycopg.AsyncConnection[DictRow]) -> None:
    """A rolling upgrade: a newer worker writes records with a field this version does not
    know (as `actor` was new to the version before it). Read from the archive, it is left out;
    from a caller or a file, an unknown field is still refused."""
    session = f"newer-{uuid.uuid4()}"
    await store.append_messages("acme", session, [Message(id="m0", role="user", content="hi")])
    record = CompactionRecord(id="c1", seq=0, level="light", action="archive", reason="r",
                              covered_ids=("m0",), covered_hash="h", strategy="archive-only",
                              tokens_before=9, tokens_after=1)
    doc = {**record.model_dump(mode="json"), "reviewed_by": "someone"}
    await db.execute("INSERT INTO ledger (tenant, session, seq, id, record)"
                     " VALUES ('acme', %s, 0, 'c1', %s)", (session, Jsonb(doc)))
    assert await store.ledger("acme", session) == [record]
    with pytest.raises(ValidationError, match="reviewed_by"):
        CompactionRecord.model_validate(doc)
