"""What the session store's parts share: the `Store` methods they call (declared here,
provided by `memory.store.store.Store`), and the session row's lock and cursors."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any

from psycopg import AsyncConnection, AsyncPipeline
from psycopg.rows import DictRow

from memory.models import (
    Cursors,
    Summary,
)

__all__ = ["StoreBase"]


def _cursors(row: dict[str, Any], embedded: int | None) -> Cursors:
    return Cursors(next_seq=row["next_seq"], ledger_head=row["ledger_head"],
                   window_tokens=row["window_tokens"], total_tokens=row["total_tokens"],
                   embedded_seq=row["next_seq"] if embedded is None else embedded,
                   rev=row["rev"])


async def _lock_session(conn: AsyncConnection[DictRow], tenant: str,
                        session: str) -> dict[str, Any]:
    await conn.execute("INSERT INTO sessions (tenant, session) VALUES (%s, %s)"
                       " ON CONFLICT DO NOTHING", (tenant, session))
    cur = await conn.execute("SELECT * FROM sessions WHERE tenant = %s AND session = %s"
                             " FOR UPDATE", (tenant, session))
    row = await cur.fetchone()
    assert row is not None
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
