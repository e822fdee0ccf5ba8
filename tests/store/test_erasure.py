"""Erasing a session (`memory.store.erasure`): an admin's transaction removes every row of it
from every table and nothing of any other session or tenant; the tombstone it leaves refuses
every later write, including one racing the erasure; the app's login may not erase."""

from __future__ import annotations

import asyncio
import uuid

import psycopg
import pytest
from psycopg.rows import dict_row

from memory.audit import ServedContext
from memory.errors import InvalidInputError, NotFoundError, SessionErasedError
from memory.models import CompactionEvent, Message, ToolCall
from memory.store.erasure import ERASED_TABLES, erase_rows, erase_session, tenant_sessions
from memory.store.store import Store
from tests.store.test_sessions import _compaction, _user

SERVED = ServedContext(seq=0, turn=1, query="where is my parcel", max_tokens=100, tokens=10,
                       source_ids=("m0",), digest="d", ledger_seq=0)


def _tenant() -> str:
    return f"er-{uuid.uuid4().hex[:8]}"


async def _fill(store: Store, tenant: str, session: str) -> None:
    """A session with a row in every table erasure covers (checkpoints are legacy: none)."""
    call = ToolCall(id="c1", name="lookup_order", arguments='{"order": 4711}')
    await store.append_messages(tenant, session, [
        *(_user(i) for i in range(8)),
        Message(id="a1", role="assistant", content="", tool_calls=(call,)),
        Message(id="t1", role="tool", tool_call_id="c1", content="order 4711: shipped")])
    await store.set_embeddings(tenant, session, [("m0", [0.1] * 384)])
    assert await store.index_terms(tenant, session) == 10
    loaded = await store.load_window(tenant, session)
    record, window = _compaction(loaded, "c1")
    await store.commit_records(tenant, session, 0, [(record, window)], loaded.next_base)
    await store.add_event(tenant, session, CompactionEvent(
        kind="completed", record_id="c1", level="medium", reason="test", tokens_before=9))
    await store.record_served(tenant, session, SERVED)


async def _counts(admin_url: str, tenant: str, session: str) -> dict[str, int]:
    async with await psycopg.AsyncConnection.connect(admin_url, row_factory=dict_row) as conn:
        counts = {}
        for table in (*ERASED_TABLES, "sessions"):
            cur = await conn.execute(
                psycopg.sql.SQL("SELECT count(*) AS n FROM {} WHERE tenant = %s AND session = %s")
                .format(psycopg.sql.Identifier(table)), (tenant, session))
            row = await cur.fetchone()
            assert row is not None
            counts[table] = int(row["n"])
        return counts


async def test_erasure_removes_every_row_of_the_session_and_nothing_else(
    store: Store, migrated_url: str
) -> None:
    tenant, other = _tenant(), _tenant()
    for t, s in ((tenant, "ticket-1"), (tenant, "ticket-2"), (other, "ticket-1")):
        await _fill(store, t, s)
    before = await _counts(migrated_url, tenant, "ticket-1")
    assert all(before[t] > 0 for t in ERASED_TABLES if t != "checkpoints"), before
    kept = [await _counts(migrated_url, tenant, "ticket-2"),
            await _counts(migrated_url, other, "ticket-1")]

    erased = await erase_session(migrated_url, tenant, "ticket-1")

    assert not erased.already and erased.messages == 10
    assert {t: n for t, n in erased.rows.items() if n} == {
        t: n for t, n in before.items() if n and t != "sessions"}
    after = await _counts(migrated_url, tenant, "ticket-1")
    assert after == {**{t: 0 for t in ERASED_TABLES}, "sessions": 1}  # the tombstone
    assert [await _counts(migrated_url, tenant, "ticket-2"),
            await _counts(migrated_url, other, "ticket-1")] == kept
    assert await store.all_messages(tenant, "ticket-1") == []
    # Listed still (an erasure whose Temporal step failed is finished by erasing again).
    assert await tenant_sessions(migrated_url, tenant) == ["ticket-1", "ticket-2"]
    # Again: nothing left to remove, and it says when it was erased.
    again = await erase_session(migrated_url, tenant, "ticket-1")
    assert again.already and again.erased_at == erased.erased_at and not any(again.rows.values())


async def test_an_erased_session_refuses_every_write(store: Store, migrated_url: str) -> None:
    tenant = _tenant()
    await store.append_messages(tenant, "t", [_user(i) for i in range(10)])
    loaded = await store.load_window(tenant, "t")
    record, window = _compaction(loaded, "c1")  # planned before the erasure, committed after
    await erase_session(migrated_url, tenant, "t")
    writes = [
        store.append_messages(tenant, "t", [_user(0)]),
        store.append_messages(tenant, "t", [_user(100)], request="r1"),
        store.cursors(tenant, "t"),
        store.load_window(tenant, "t"),
        store.commit_records(tenant, "t", 0, [(record, window)], loaded.next_base),
        store.record_served(tenant, "t", SERVED),
        store.add_event(tenant, "t", CompactionEvent(kind="started", record_id="c2", level="light",
                                                     reason="x", tokens_before=1)),
    ]
    for write in writes:
        with pytest.raises(SessionErasedError, match=r"'t' of tenant .* was erased") as caught:
            await write
        assert isinstance(caught.value, InvalidInputError) and caught.value.field == "session"
    assert await store.index_terms(tenant, "t") == 0
    assert await _counts(migrated_url, tenant, "t") == {**{t: 0 for t in ERASED_TABLES},
                                                         "sessions": 1}


async def test_a_write_racing_the_erasure_leaves_nothing_behind(
    store: Store, migrated_url: str
) -> None:
    """The erasure holds the session's row while it deletes; the inverted index, a served
    context and an append started meanwhile wait, then find the mark. Without the locks the
    index would write postings read from a snapshot taken before the delete."""
    tenant = _tenant()
    await store.append_messages(tenant, "t", [_user(i) for i in range(50)])
    async with await psycopg.AsyncConnection.connect(migrated_url) as conn:
        async with conn.transaction():
            await erase_rows(conn, tenant, "t")
            racing = [asyncio.ensure_future(w) for w in (
                store.index_terms(tenant, "t"), store.record_served(tenant, "t", SERVED),
                store.append_messages(tenant, "t", [_user(99)]))]
            await asyncio.sleep(0.5)
            assert [t.done() for t in racing] == [False] * 3  # each waits for the erasure
        results = await asyncio.gather(*racing, return_exceptions=True)
    assert results[0] == 0
    assert all(isinstance(r, SessionErasedError) for r in results[1:]), results
    assert await _counts(migrated_url, tenant, "t") == {**{t: 0 for t in ERASED_TABLES},
                                                         "sessions": 1}


async def test_only_an_admin_erases_and_a_mistyped_id_leaves_no_tombstone(
    store: Store, app_url: str, migrated_url: str
) -> None:
    tenant = _tenant()
    await store.append_messages(tenant, "t", [_user(0)])
    with pytest.raises(InvalidInputError, match="admin_url: this login may not delete"):
        await erase_session(app_url, tenant, "t")
    assert len(await store.all_messages(tenant, "t")) == 1
    with pytest.raises(NotFoundError, match="no session 'tx'"):
        await erase_session(migrated_url, tenant, "tx")
    assert (await _counts(migrated_url, tenant, "tx"))["sessions"] == 0
    # The ledger stays append-only for an admin too, unless the session is erased.
    async with await psycopg.AsyncConnection.connect(migrated_url) as conn:
        with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
            await conn.execute("DELETE FROM ledger")


async def test_an_append_does_not_wait_for_the_inverted_index(
    store: Store, migrated_url: str
) -> None:
    """The index takes KEY SHARE on the session's row (for the erasure's sake); appends take
    NO KEY UPDATE, which does not conflict with it, so a long index pass never holds one up."""
    tenant = _tenant()
    await store.append_messages(tenant, "t", [_user(0)])
    async with await psycopg.AsyncConnection.connect(migrated_url) as conn:
        async with conn.transaction():
            await conn.execute("SELECT set_config('app.tenant', %s, true)", (tenant,))
            await conn.execute("SELECT 1 FROM sessions WHERE tenant = %s AND session = 't'"
                               " FOR KEY SHARE", (tenant,))
            out = await asyncio.wait_for(store.append_messages(tenant, "t", [_user(1)]), 5)
            assert out.appended == 1
