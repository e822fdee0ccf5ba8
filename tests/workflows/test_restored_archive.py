"""An archive restored from a copy older than a session's run (a backup, a failover that lost
commits): the run notices its cursors are ahead of the archive and continues from the
archive's (user test, session 24, finding 1). Before, it kept its own: every compaction was
refused ("ledger is at 1, not 2") and restored messages past its embedding cursor stayed
unembedded, with `stats` saying nothing was pending."""

from __future__ import annotations

import uuid
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.rows import DictRow
from temporalio.worker import Worker

from longthread.client import Longthread
from memory.store.erasure import ERASED_TABLES
from memory.store.store import Store

TABLES = ("sessions", *ERASED_TABLES)


def _batch(start: int, n: int) -> list[dict[str, Any]]:
    return [{"id": f"m{i}", "role": ("user", "assistant")[i % 2],
             "content": f"Step {i}: parcel {4700 + i} moved to depot {i % 7}, gate {i % 5}. "
                        "The courier confirmed the handover and the customer was told."}
            for i in range(start, start + n)]


async def _snapshot(db: psycopg.AsyncConnection[DictRow], tenant: str, session: str) -> None:
    """What a backup of this session holds: a copy of each of its tables' rows."""
    for table in TABLES:
        await db.execute(sql.SQL("CREATE TEMP TABLE {} AS SELECT * FROM {} WHERE tenant = {}"
                                 " AND session = {}").format(
            sql.Identifier(f"snap_{table}"), sql.Identifier(table), sql.Literal(tenant),
            sql.Literal(session)))


async def _restore(db: psycopg.AsyncConnection[DictRow], tenant: str, session: str) -> None:
    """Put the backup's rows back in place of the session's, as pg_restore would (triggers
    off, as a restore loads rows: the ledger's refuses deletes)."""
    await db.execute("SET session_replication_role = replica")
    for table in TABLES:
        cur = await db.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = %s"
            " AND table_schema = 'public' AND is_generated = 'NEVER'"
            " ORDER BY ordinal_position", (table,))
        columns = sql.SQL(", ").join(sql.Identifier(r["column_name"])
                                     for r in await cur.fetchall())
        await db.execute(sql.SQL("DELETE FROM {} WHERE tenant = %s AND session = %s").format(
            sql.Identifier(table)), (tenant, session))
        await db.execute(sql.SQL("INSERT INTO {} ({}) SELECT {} FROM {}").format(
            sql.Identifier(table), columns, columns, sql.Identifier(f"snap_{table}")))
    await db.execute("SET session_replication_role = DEFAULT")


async def _unembedded(db: psycopg.AsyncConnection[DictRow], tenant: str, session: str) -> int:
    cur = await db.execute("SELECT count(*) AS n FROM messages WHERE tenant = %s AND"
                           " session = %s AND embedding IS NULL", (tenant, session))
    row = await cur.fetchone()
    assert row is not None
    return int(row["n"])


@pytest.mark.parametrize("first_write", ["compact", "append"])
@pytest.mark.parametrize("lost_compaction", [True, False])
async def test_a_run_continues_from_an_archive_restored_behind_it(
        lt: Longthread, worker: Worker, store: Store,
        db: psycopg.AsyncConnection[DictRow], first_write: str, lost_compaction: bool
) -> None:
    """The backup lost an append and a compaction, or only the append: one write, as a
    replica one commit behind loses (the archive's rev is then exactly the run's)."""
    tenant, session = f"restore-{uuid.uuid4().hex[:6]}", "ticket-1"
    conv = await lt.conversation(session, tenant=tenant)
    await conv.append_many(_batch(0, 30))
    first = await conv.compact(preserve_recent=5)
    assert first is not None
    await conv.settle()
    await _snapshot(db, tenant, session)  # the backup: 30 messages, one compaction

    await conv.append_many(_batch(30, 30))
    lost = await conv.compact(preserve_recent=5) if lost_compaction else None
    ahead = await conv.settle()
    assert (ahead.ledger_head, ahead.messages) == (2 if lost_compaction else 1, 60)
    assert await _unembedded(db, tenant, session) == 0

    await _restore(db, tenant, session)
    # The run still holds the cursors of 60 messages and two compactions.
    if first_write == "compact":
        # Planned on the run's head (2) against the archive's (1): the run reads the
        # archive's cursors and plans again, instead of failing on the conflict.
        await conv.compact(preserve_recent=5)
        resynced = await conv.stats()
        assert resynced.ledger_head <= 2 and resynced.messages == 30
    # What the backup lost is sent again: stored, embedded (the run's embedding cursor was
    # past it), and compacted against the archive's ledger.
    out = await conv.append_many(_batch(30, 30))
    assert out.appended == 30
    again = await conv.compact(preserve_recent=5)
    assert again is not None
    done = await conv.settle()
    assert done.messages == 60 and done.pending_embedding == 0
    assert await _unembedded(db, tenant, session) == 0
    ledger = await store.ledger(tenant, session)
    assert ledger[0].at == first.at
    assert lost is None or lost.at not in {r.at for r in ledger}
    assert [r.seq for r in ledger] == list(range(len(ledger)))
    assert ledger[-1].id == again.id and done.ledger_head == len(ledger)
