"""The async connection pool, configured the way pgvector-python and langgraph recommend."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import psycopg
from pgvector.psycopg import register_vector_async
from psycopg import AsyncConnection
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import DictRow, dict_row
from psycopg_pool import AsyncConnectionPool, PoolTimeout

__all__ = ["describe_url", "open_archive", "open_pool", "unreachable"]

CONNECT_KWARGS = {"autocommit": True, "prepare_threshold": 0, "row_factory": dict_row}
# How long one reconnection attempt keeps trying before the pool gives it up. psycopg_pool
# doubles the wait between tries with no cap (1, 2, 4 ... 64 s) until then (300 s by default),
# so after a 73 s outage appends waited 45-53 s more for the next try (an SRE's user test).
# Given up sooner, the next request starts a fresh attempt whose first try is 1 s away.
RECONNECT_SECONDS = 15.0


async def _configure(conn: AsyncConnection[DictRow]) -> None:
    await register_vector_async(conn)


async def open_pool(
    url: str, *, min_size: int = 1, max_size: int = 8, timeout: float = 30.0
) -> AsyncConnectionPool[AsyncConnection[DictRow]]:
    """Open a pool whose connections know the `vector` type; the extension must already exist."""
    pool: AsyncConnectionPool[AsyncConnection[DictRow]] = AsyncConnectionPool(
        url, min_size=min_size, max_size=max_size, kwargs=CONNECT_KWARGS,
        configure=_configure, open=False, timeout=timeout,
        check=AsyncConnectionPool.check_connection, reconnect_timeout=RECONNECT_SECONDS,
    )
    try:
        await pool.open(wait=True, timeout=timeout)
    except BaseException:  # psycopg_pool closes it on a timeout only; cancelled, it would
        await pool.close()  # go on connecting in the background, reachable by no one
        raise
    return pool


async def open_archive(
    url: str, what: str = "archive database", **options: Any
) -> AsyncConnectionPool[AsyncConnection[DictRow]]:
    """`open_pool`, or a ConnectionError naming the database and libpq's reason. The pool
    retries a failing connection until its timeout and then says only "pool initialization
    incomplete after 30.0 sec"; a client against a full Postgres (`too many clients already`)
    or a misspelled database printed that traceback and nothing more (a platform engineer's
    user test). One direct connection then asks libpq why."""
    try:
        return await open_pool(url, **options)
    except PoolTimeout as exc:
        reason: BaseException = exc
        try:
            conn = await AsyncConnection.connect(url, connect_timeout=5, row_factory=dict_row)
        except (OSError, psycopg.OperationalError) as direct:
            reason = direct
        else:
            try:  # connects, so what failed may be the pool's setup (no pgvector, say)
                await _configure(conn)
            except Exception as setup:
                reason = setup
            finally:
                await conn.close()
        raise unreachable(what, url, reason) from None
    except (OSError, psycopg.OperationalError) as exc:
        raise unreachable(what, url, exc) from None


@asynccontextmanager
async def checkout(pool: AsyncConnectionPool[AsyncConnection[DictRow]]
                   ) -> AsyncIterator[AsyncConnection[DictRow]]:
    """A connection from an open pool, or a ConnectionError naming the database: psycopg's
    PoolTimeout ("couldn't get a connection after 30.00 sec") reached a client's `context()`
    as it was, naming nothing, while Postgres was down (an SRE's user test)."""
    try:
        async with pool.connection() as conn:
            yield conn
    except PoolTimeout as exc:
        url = pool.conninfo if isinstance(pool.conninfo, str) else ""  # ours are strings
        raise unreachable("archive database", url, exc) from None


def archive_refusal(exc: psycopg.Error) -> str | None:
    """What to say of a database error no retry mends: a missing grant, table or column
    (SQLSTATE class 42) or schema (3F000), as after a restore that left the application role
    without its grants; None for anything else (a lost connection, a deadlock, a full disk),
    which is waited out. The worker fails an append with it (`activities.running`), and the
    CLI prints it as one line where it printed a 73-line traceback (an SRE's user test)."""
    state = exc.sqlstate or ""
    if not (state.startswith("42") or state == "3F000"):
        return None
    said = exc.diag.message_primary or str(exc).splitlines()[0]
    return (f"the archive refused this login: {said} ({type(exc).__name__}, SQLSTATE "
            f"{state}). Check the database's grants and schema (docs/operations.md, "
            "\"Restoring grants\")")


def describe_url(url: str) -> str:
    """`user@host:port/dbname` of a connection URL, never its password: what an error line
    names so that an operator sees which database was meant."""
    try:
        parts = conninfo_to_dict(url)
    except Exception:  # a URL libpq cannot parse: name nothing rather than echo a secret
        return "the configured database"
    user = f"{parts['user']}@" if parts.get("user") else ""
    host = parts.get("host") or "localhost"
    if str(host).startswith("/"):  # a unix socket directory (the embedded Postgres)
        host = f"socket {host}"
    port = f":{parts['port']}" if parts.get("port") else ""
    return f"{user}{host}{port}/{parts.get('dbname') or ''}".rstrip("/")


def unreachable(what: str, url: str, exc: BaseException) -> ConnectionError:
    """A failed connection as the CLI reports it (one line, exit 3): which database, and
    libpq's reason, with the password blanked wherever the reason quotes the URL."""
    reason = " ".join(str(exc).split()) or type(exc).__name__
    try:
        password = conninfo_to_dict(url).get("password")
    except Exception:
        password = None
    reason = reason.replace(url, describe_url(url))
    if password:  # as a URL or a keyword string would quote it
        for quoted in (f":{password}@", f"password={password}", f"password='{password}'"):
            reason = reason.replace(quoted, quoted.replace(str(password), "***"))
    return ConnectionError(f"{what} unreachable ({describe_url(url)}): {reason}")
