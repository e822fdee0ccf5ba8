from __future__ import annotations

import psycopg
import pytest
from psycopg.rows import DictRow

from memory.errors import InvalidInputError
from memory.store.migrations import MIGRATIONS, setup


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
