"""The async connection pool, configured the way pgvector-python and langgraph recommend."""

from __future__ import annotations

from pgvector.psycopg import register_vector_async
from psycopg import AsyncConnection
from psycopg.rows import DictRow, dict_row
from psycopg_pool import AsyncConnectionPool

__all__ = ["open_pool"]

CONNECT_KWARGS = {"autocommit": True, "prepare_threshold": 0, "row_factory": dict_row}


async def _configure(conn: AsyncConnection[DictRow]) -> None:
    await register_vector_async(conn)


async def open_pool(
    url: str, *, min_size: int = 1, max_size: int = 8, timeout: float = 30.0
) -> AsyncConnectionPool[AsyncConnection[DictRow]]:
    """Open a pool whose connections know the `vector` type; the extension must already exist."""
    pool: AsyncConnectionPool[AsyncConnection[DictRow]] = AsyncConnectionPool(
        url, min_size=min_size, max_size=max_size, kwargs=CONNECT_KWARGS,
        configure=_configure, open=False, timeout=timeout,
        check=AsyncConnectionPool.check_connection,
    )
    await pool.open(wait=True, timeout=timeout)
    return pool
