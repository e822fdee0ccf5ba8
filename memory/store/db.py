"""The async connection pool, configured the way pgvector-python and langgraph recommend."""

from __future__ import annotations

import select
import time
import weakref

from pgvector.psycopg import register_vector_async
from psycopg import AsyncConnection
from psycopg.rows import DictRow, dict_row
from psycopg_pool import AsyncConnectionPool

__all__ = ["open_pool"]

CONNECT_KWARGS = {"autocommit": True, "prepare_threshold": 0, "row_factory": dict_row}
RECENT_SECONDS = 2.0  # a connection given back this recently is checked without a round trip

_given_back: weakref.WeakKeyDictionary[AsyncConnection[DictRow], float] = \
    weakref.WeakKeyDictionary()


async def _configure(conn: AsyncConnection[DictRow]) -> None:
    await register_vector_async(conn)


async def _reset(conn: AsyncConnection[DictRow]) -> None:
    _given_back[conn] = time.monotonic()


def _quiet(conn: AsyncConnection[DictRow]) -> bool:
    """Nothing has arrived on an idle connection's socket: a server that shut down or ended
    the session would have sent its error (or closed the socket), which makes it readable."""
    try:
        readable, _, _ = select.select([conn.fileno()], [], [], 0)
    except (OSError, ValueError):
        return False
    return not readable


async def _check(conn: AsyncConnection[DictRow]) -> None:
    """The pool's check before it hands a connection out: a round trip (an empty query), unless
    the connection was given back moments ago and its socket is quiet. Every store call takes a
    connection, so the round trip was one in three of a context()'s."""
    if (not conn.closed and time.monotonic() - _given_back.get(conn, -RECENT_SECONDS)
            < RECENT_SECONDS and _quiet(conn)):
        return
    await AsyncConnectionPool.check_connection(conn)


async def open_pool(
    url: str, *, min_size: int = 1, max_size: int = 8, timeout: float = 30.0
) -> AsyncConnectionPool[AsyncConnection[DictRow]]:
    """Open a pool whose connections know the `vector` type; the extension must already exist."""
    pool: AsyncConnectionPool[AsyncConnection[DictRow]] = AsyncConnectionPool(
        url, min_size=min_size, max_size=max_size, kwargs=CONNECT_KWARGS,
        configure=_configure, reset=_reset, open=False, timeout=timeout, check=_check,
    )
    await pool.open(wait=True, timeout=timeout)
    return pool
