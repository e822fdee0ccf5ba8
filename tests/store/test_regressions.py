"""Regressions found by the store tests: large bodies are counted as the window holds them,
sessions from before migration 6 get their cursors, and a message read back can be re-sent."""

from __future__ import annotations

import uuid

import psycopg
from psycopg import sql

from memory.models import Message
from memory.store.db import open_pool
from memory.store.migrations import setup
from memory.store.store import Store
from memory.window import recent_slice
from tests.store.old_schema import migrate_to


async def test_read_window_counts_large_bodies_by_reference(store: Store) -> None:
    """memory/store/sessions.py `_enough` counts the full body of a large message, while the
    window (load_window, replay) holds it by reference: serving stops reading too early."""
    session = f"s-{uuid.uuid4()}"
    msgs = [Message(id=f"m{i}", role="user", content=f"Note {i}: the parcel is in depot {i}.")
            for i in range(400)]
    msgs.append(Message(id="big", role="user", content="depot " * 50_000))  # 300 kB
    msgs += [Message(id=f"n{i}", role="user", content=f"Later {i}: parcel news.")
             for i in range(10)]
    await store.append_messages("acme", session, msgs)
    full = await store.load_window("acme", session)
    for budget in (1000, 2000):
        read = await store.read_window("acme", session, budget)
        assert recent_slice(read.state.messages, budget) == \
            recent_slice(full.state.messages, budget)


async def test_migration_six_gives_pre_existing_sessions_their_cursors(pg_url: str) -> None:
    """Migration 6 created `sessions` empty: without migration 8 a session stored before it
    restarted at seq 0 (so two messages shared a seq)."""
    name = f"lt_v5_{uuid.uuid4().hex[:8]}"
    async with await psycopg.AsyncConnection.connect(pg_url, autocommit=True) as admin:
        await admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = psycopg.conninfo.make_conninfo(pg_url, dbname=name)
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await migrate_to(conn, 5)
        await conn.execute("INSERT INTO messages (tenant, session, id, seq, role, content)"
                           " VALUES ('acme', 'old', 'm0', 0, 'user', 'a parcel in Leeds')")
        await setup(conn, 384)
    pool = await open_pool(url)
    try:
        store = Store(pool)
        assert (await store.cursors("acme", "old")).next_seq == 1
        out = await store.append_messages("acme", "old", [
            Message(id="m1", role="user", content="new")])
        assert (out.appended, out.cursors.next_seq) == (1, 2)
        assert [s for s, _ in await store.get_with_seq("acme", "old", ["m0", "m1"])] == [0, 1]
    finally:
        await pool.close()


async def test_a_message_read_back_can_be_appended_again(store: Store) -> None:
    """memory/models.py `message_digest` hashes created_at as given: the same instant read
    back from timestamptz (UTC) digests differently, so re-appending it is refused."""
    session = f"s-{uuid.uuid4()}"
    sent = Message.model_validate({"id": "a", "role": "user", "content": "x",
                                   "created_at": "2023-05-08T15:56:00+02:00"})
    await store.append_messages("acme", session, [sent])
    (back,) = await store.all_messages("acme", session)
    assert back.created_at == sent.created_at  # the same instant
    out = await store.append_messages("acme", session, [back])  # raises InvalidInputError
    assert out.duplicates == 1
