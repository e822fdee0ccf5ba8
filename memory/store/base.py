"""What the session store's parts share: the `Store` methods they call (declared here,
provided by `memory.store.store.Store`), and the session row's lock and cursors."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any

from psycopg import AsyncConnection, AsyncPipeline
from psycopg.rows import DictRow

from memory.errors import SessionErasedError
from memory.models import (
    Cursors,
    Summary,
)

__all__ = ["LOCK_SESSION", "NOT_ERASED", "StoreBase", "refuse_erased"]


def _cursors(row: dict[str, Any], embedded: int | None) -> Cursors:
    return Cursors(next_seq=row["next_seq"], ledger_head=row["ledger_head"],
                   window_tokens=row["window_tokens"], total_tokens=row["total_tokens"],
                   embedded_seq=row["next_seq"] if embedded is None else embedded,
                   rev=row["rev"])


# Every write holds the session's row in this mode until it commits, so seqs and ledger
# seqs are taken in order. NO KEY UPDATE, not UPDATE: it leaves the inverted index's KEY SHARE
# (`memory.store.indexing`) free to run beside an append; only an erasure's FOR UPDATE waits
# for both.
LOCK_SESSION = ("SELECT * FROM sessions WHERE tenant = %s AND session = %s"
                " FOR NO KEY UPDATE")


# What a write that does not lock the session's row (a served context, a compaction event)
# checks instead: KEY SHARE waits for an erasure under way (FOR UPDATE) and then reads its
# mark, so nothing it writes outlives the erasure; it never waits for an append.
# A scalar sub-select: under NOT EXISTS (... WHERE erased_at IS NOT NULL) the filter ran
# before the lock and the statement did not wait (tests/store/test_erasure.py).
NOT_ERASED = """(SELECT erased_at FROM sessions WHERE tenant = %(tenant)s
    AND session = %(session)s FOR KEY SHARE) IS NULL"""


def refuse_erased(row: dict[str, Any] | None, tenant: str, session: str) -> None:
    if row is not None and row.get("erased_at") is not None:
        raise SessionErasedError(tenant, session)


async def _lock_session(conn: AsyncConnection[DictRow], tenant: str,
                        session: str) -> dict[str, Any]:
    await conn.execute("INSERT INTO sessions (tenant, session) VALUES (%s, %s)"
                       " ON CONFLICT DO NOTHING", (tenant, session))
    cur = await conn.execute(LOCK_SESSION, (tenant, session))
    row = await cur.fetchone()
    assert row is not None
    refuse_erased(row, tenant, session)
    return row


_EMBEDDED_SEQ = ("SELECT min(seq) AS s FROM messages WHERE tenant = %s AND session = %s"
                 " AND embedding IS NULL")


async def _embedded_seq(conn: AsyncConnection[DictRow], tenant: str, session: str) -> int | None:
    cur = await conn.execute(_EMBEDDED_SEQ, (tenant, session))
    row = await cur.fetchone()
    return None if row is None or row["s"] is None else int(row["s"])


class StoreBase:
    """Mixed into `Store`, which provides `scoped` (a tenant-bound transaction)."""

    # (tenant, session) -> the summaries of the version last read, by id; least recently used
    # first. An entry is replaced, never changed, so a read can hold on to the one it sent.
    _summary_cache: OrderedDict[tuple[str, str], dict[str, Summary]]

    def scoped(self, tenant: str, snapshot: bool = False
               ) -> AbstractAsyncContextManager[AsyncConnection[DictRow]]:
        raise NotImplementedError

    def pipelined(self, tenant: str
                  ) -> AbstractAsyncContextManager[tuple[AsyncConnection[DictRow],
                                                         AsyncPipeline]]:
        raise NotImplementedError

    async def _batch(self, tenant: str, queries: Sequence[tuple[str, Any]], *,
                     snapshot: bool = False, prepare: bool | None = None
                     ) -> list[list[dict[str, Any]]]:
        raise NotImplementedError

    async def _rows(self, conn: AsyncConnection[DictRow], query: str,
                    params: Sequence[Any]) -> list[dict[str, Any]]:
        cur = await conn.execute(query, params)
        return await cur.fetchall()
