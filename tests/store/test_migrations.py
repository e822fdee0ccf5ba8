from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.rows import DictRow, dict_row
from psycopg.types.json import Jsonb

from memory.audit import ServedContext
from memory.errors import InvalidInputError
from memory.models import Message
from memory.store.db import open_pool
from memory.store.migrations import MIGRATIONS, setup
from memory.store.store import Store
from tests.store.old_schema import database_at, migrate_to

SERVED = ServedContext(seq=0, turn=1, query=None, max_tokens=10, tokens=5, source_ids=(),
                       digest="d", ledger_seq=0)


async def test_setup_is_idempotent(db: psycopg.AsyncConnection[DictRow]) -> None:
    assert await setup(db, 384) == len(MIGRATIONS)
    assert await setup(db, 384) == len(MIGRATIONS)
    cur = await db.execute("SELECT version FROM schema_version ORDER BY version")
    rows = await cur.fetchall()
    assert [r["version"] for r in rows] == list(range(1, len(MIGRATIONS) + 1))


async def test_schema_has_tables_and_indexes(db: psycopg.AsyncConnection[DictRow]) -> None:
    cur = await db.execute(
        "SELECT indexname FROM pg_indexes WHERE tablename = 'messages' ORDER BY indexname")
    names = {r["indexname"] for r in await cur.fetchall()}
    assert {"messages_embedding_idx", "messages_seq_idx",
            "messages_time_idx", "messages_pkey"} <= names
    cur = await db.execute(
        "SELECT format_type(atttypid, atttypmod) AS t FROM pg_attribute "
        "WHERE attrelid = 'messages'::regclass AND attname = 'embedding'")
    assert (await cur.fetchone()) == {"t": "vector(384)"}


async def test_embedding_dimension_mismatch_is_refused(
    db: psycopg.AsyncConnection[DictRow],
) -> None:
    with pytest.raises(InvalidInputError, match="384-dimensional"):
        await setup(db, 1536)


async def test_ledger_is_append_only(db: psycopg.AsyncConnection[DictRow]) -> None:
    await db.execute(
        "INSERT INTO ledger (tenant, session, seq, id, record) VALUES ('t', 's', 0, 'r', '{}')")
    with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
        await db.execute("UPDATE ledger SET record = '{\"x\": 1}' WHERE id = 'r'")
    with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
        await db.execute("DELETE FROM ledger WHERE id = 'r'")
    cur = await db.execute("SELECT count(*) AS n FROM ledger WHERE id = 'r'")
    assert (await cur.fetchone()) == {"n": 1}


@pytest.fixture
async def v5_url(pg_url: str) -> AsyncIterator[str]:
    """A fresh database at schema version 5, with a message and a ledger record in it."""
    async with database_at(pg_url, 5) as url:
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            await conn.execute("INSERT INTO messages (tenant, session, id, seq, role, content)"
                               " VALUES ('acme', 'old', 'm0', 0, 'user', 'a parcel in Leeds')")
            await conn.execute("INSERT INTO ledger (tenant, session, seq, id, record)"
                               " VALUES ('acme', 'old', 0, 'c1', '{}')")
        yield url


NEW_TABLES = ("sessions", "tool_calls", "window_versions", "summaries", "compaction_events")


async def test_a_version_five_database_upgrades_to_the_latest(v5_url: str) -> None:
    async with await psycopg.AsyncConnection.connect(v5_url, autocommit=True,
                                                     row_factory=dict_row) as conn:
        latest = len(MIGRATIONS)
        assert latest >= 6
        assert await setup(conn, 384) == latest
        assert await setup(conn, 384) == latest  # and again: nothing left to do
        cur = await conn.execute("SELECT version FROM schema_version ORDER BY version")
        assert [r["version"] for r in await cur.fetchall()] == list(range(1, latest + 1))
        cur = await conn.execute(
            "SELECT relname, relrowsecurity AS rls, relforcerowsecurity AS forced"
            " FROM pg_class WHERE relname = ANY(%s) ORDER BY relname", (list(NEW_TABLES),))
        assert [(r["relname"], r["rls"], r["forced"]) for r in await cur.fetchall()] == sorted(
            (t, True, True) for t in NEW_TABLES)
        cur = await conn.execute(
            "SELECT has_table_privilege('longthread_app', 'sessions', 'UPDATE') AS s,"
            " has_table_privilege('longthread_app', 'window_versions', 'INSERT') AS w,"
            " has_table_privilege('longthread_app', 'window_versions', 'UPDATE') AS wu,"
            " has_sequence_privilege('longthread_app', 'served_contexts_seq', 'USAGE') AS q")
        # Older clients and workers still draw from it until replaced (migration 17).
        assert await cur.fetchone() == {"s": True, "w": True, "wu": False, "q": True}
        # What was stored before the upgrade survives it.
        cur = await conn.execute("SELECT id, content, digest, tokens FROM messages")
        # ... with its token count estimated (17 characters / 4, plus 4) by migration 8.
        assert await cur.fetchall() == [{"id": "m0", "content": "a parcel in Leeds",
                                         "digest": None, "tokens": 9}]
        cur = await conn.execute("SELECT id FROM ledger")
        assert await cur.fetchall() == [{"id": "c1"}]
    # The upgraded database serves the new API.
    pool = await open_pool(v5_url)
    try:
        store = Store(pool)
        session = f"new-{uuid.uuid4()}"
        out = await store.append_messages("acme", session, [
            Message(id="m0", role="user", content="hello")])
        assert (out.appended, out.cursors.next_seq) == (1, 1)
        assert (await store.cursors("acme", session)).window_tokens > 0
        assert [m.content for m in await store.all_messages("acme", "old")] == [
            "a parcel in Leeds"]
    finally:
        await pool.close()


async def test_version_nine_window_versions_are_split_into_summaries_and_ids(
    pg_url: str,
) -> None:
    """Migration 10 moves each summary a version held into `summaries`, once, and leaves the
    version its ids in window order."""
    first = {"id": "s1", "level": 1, "content": "A", "covers": ["m0"]}
    second = {"id": "s2", "level": 1, "content": "B", "covers": ["m1"]}
    async with database_at(pg_url, 9) as url:
        async with await psycopg.AsyncConnection.connect(url, autocommit=True,
                                                         row_factory=dict_row) as conn:
            await conn.execute("ALTER TABLE window_versions NO FORCE ROW LEVEL SECURITY")
            for version, held in ((1, [first]), (2, [second, first])):
                await conn.execute(
                    "INSERT INTO window_versions (tenant, session, version, base_seq, kept_ids,"
                    " summaries, tokens) VALUES ('acme', 'old', %s, 0, '{}', %s, 0)",
                    (version, Jsonb(held)))
            assert await setup(conn, 384) == len(MIGRATIONS)
            await conn.execute("ALTER TABLE window_versions NO FORCE ROW LEVEL SECURITY")
            await conn.execute("ALTER TABLE summaries NO FORCE ROW LEVEL SECURITY")
            cur = await conn.execute("SELECT version, summary_ids FROM window_versions"
                                     " ORDER BY version")
            assert await cur.fetchall() == [{"version": 1, "summary_ids": ["s1"]},
                                            {"version": 2, "summary_ids": ["s2", "s1"]}]
            cur = await conn.execute("SELECT id, summary FROM summaries ORDER BY id")
            assert await cur.fetchall() == [{"id": "s1", "summary": first},
                                            {"id": "s2", "summary": second}]


async def test_insert_heavy_tables_are_vacuumed_after_small_growth(
    db: psycopg.AsyncConnection[DictRow],
) -> None:
    """Migration 11: autovacuum follows a burst of appends within 1% growth (plus a floor)."""
    cur = await db.execute("SELECT relname, reloptions FROM pg_class"
                           " WHERE relname IN ('messages', 'message_terms') ORDER BY relname")
    options = {r["relname"]: set(r["reloptions"] or ()) for r in await cur.fetchall()}
    assert "autovacuum_vacuum_insert_scale_factor=0.01" in options["messages"]
    assert "autovacuum_vacuum_insert_scale_factor=0.01" in options["message_terms"]


async def _served_before_17(conn: psycopg.AsyncConnection[Any], seqs: Sequence[int]) -> None:
    """Contexts served in session acme/old, numbered as version 16 did (a shared sequence)."""
    for seq in seqs:
        await conn.execute("INSERT INTO served_contexts (tenant, session, seq, turn, record)"
                           " VALUES ('acme', 'old', %s, 1, %s)", (seq, Jsonb({"seq": seq})))


async def test_version_sixteen_served_numbers_go_on_per_session(pg_url: str) -> None:
    """Migration 17: a context already served keeps its number (an auditor may have written
    it down); the session counts on from its highest, and every other session, of any
    tenant, from 1, so no tenant's numbers count another's calls."""
    async with database_at(pg_url, 16) as url:
        async with await psycopg.AsyncConnection.connect(url, autocommit=True,
                                                         row_factory=dict_row) as conn:
            await conn.execute("ALTER TABLE served_contexts NO FORCE ROW LEVEL SECURITY")
            await _served_before_17(conn, (40, 41))
            assert await setup(conn, 384) == len(MIGRATIONS)
            cur = await conn.execute("SELECT relrowsecurity AS rls, relforcerowsecurity AS f"
                                     " FROM pg_class WHERE relname = 'served_counters'")
            assert await cur.fetchone() == {"rls": True, "f": True}
        pool = await open_pool(url)
        try:
            store = Store(pool)
            served = SERVED
            assert (await store.record_served("acme", "old", served)).seq == 42
            assert (await store.record_served("beta", "old", served)).seq == 1
            assert (await store.record_served("acme", "new", served)).seq == 1
            # A client of the previous version, still running, records as it did: from the old
            # sequence, now in a range the counters never enter. Old and new writers take
            # turns on one session (review of session 31: counting on above an old writer's
            # number took its next one), and then at once: no number is given twice.
            async with await psycopg.AsyncConnection.connect(url, autocommit=True) as old:
                async def old_writer() -> int:
                    drawn = await old.execute(
                        "WITH next AS (SELECT nextval('served_contexts_seq') AS seq)"
                        " INSERT INTO served_contexts (tenant, session, seq, turn, record)"
                        " SELECT 'acme', 'new', next.seq, 1, jsonb_build_object('seq', next.seq)"
                        " FROM next RETURNING seq")
                    row = await drawn.fetchone()
                    assert row is not None
                    return int(row[0])

                taken = [await old_writer(), (await store.record_served(
                    "acme", "new", served)).seq, await old_writer()]
                assert taken[0] >= 1_000_000_000 and taken[1] == 2 and taken[2] > taken[0]
                taken += [r.seq for r in await asyncio.gather(*(
                    store.record_served("acme", "new", served) for _ in range(5)))]
                taken.append(await old_writer())
            assert len(set(taken)) == len(taken) and sorted(taken[3:8]) == [3, 4, 5, 6, 7]
            # The newest at the turn is the one recorded last, whatever its number.
            newest, _ = await store.last_served("acme", "new", 1)
            assert newest is not None and newest.get("seq") == taken[-1]
            assert [r["seq"] for r in await store.served("acme", "old")] == [40, 41, 42]
        finally:
            await pool.close()


async def test_migration_seventeen_seeds_every_sessions_counter_as_an_owner_under_rls(
        pg_url: str) -> None:
    """Review of session 31: the owner that migrates (not a superuser on managed Postgres, or
    a worker whose login may migrate) is subject to FORCE'd row-level security, so the seed
    read no served context, every old session counted from 1 again, and the first number it
    already held failed every later call on the primary key."""
    role, name = f"owner_{uuid.uuid4().hex[:8]}", f"lt_rls_{uuid.uuid4().hex[:8]}"
    async with await psycopg.AsyncConnection.connect(pg_url, autocommit=True) as admin:
        await admin.execute(sql.SQL("CREATE ROLE {} LOGIN CREATEROLE").format(
            sql.Identifier(role)))
        await admin.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(
            sql.Identifier(name), sql.Identifier(role)))
    url = psycopg.conninfo.make_conninfo(pg_url, dbname=name)
    try:
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as admin:
            await admin.execute("CREATE EXTENSION vector")
            await admin.execute(sql.SQL("GRANT ALL ON SCHEMA public TO {}").format(
                sql.Identifier(role)))
        owner_url = psycopg.conninfo.make_conninfo(url, user=role)
        async with await psycopg.AsyncConnection.connect(owner_url, autocommit=True) as owner:
            await migrate_to(owner, 16)
            async with owner.transaction():  # as version 16's app wrote them: tenant set
                await owner.execute("SELECT set_config('app.tenant', 'acme', true)")
                await _served_before_17(owner, (3, 5))
            assert await setup(owner, 384) == len(MIGRATIONS)
            cur = await owner.execute("SELECT relforcerowsecurity FROM pg_class"
                                      " WHERE relname = 'served_contexts'")
            assert await cur.fetchone() == (True,)  # forced again after the seed
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as admin:
            cur = await admin.execute("SELECT tenant, session, last FROM served_counters")
            assert await cur.fetchall() == [("acme", "old", 5)]  # the seed saw every row
        pool = await open_pool(url)
        try:
            store = Store(pool)
            served = SERVED
            assert [(await store.record_served("acme", "old", served)).seq
                    for _ in range(3)] == [6, 7, 8]
        finally:
            await pool.close()
    finally:
        async with await psycopg.AsyncConnection.connect(pg_url, autocommit=True) as admin:
            await admin.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(
                sql.Identifier(name)))
            await admin.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))
