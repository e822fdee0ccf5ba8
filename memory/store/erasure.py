"""Erasing a session from the archive, on request (a customer's right to erasure).

Every other path keeps everything (invariant 1): the app's role may delete nothing, so only an
admin's login erases. What is left is the session's `sessions` row, marked `erased_at` with its
cursors at zero: a tombstone, which holds no content. Every write locks that row and refuses an
erased session (`memory.store.base.refuse_erased`), so a worker still running for it, or a
client that kept its id, cannot write again.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from psycopg import AsyncConnection, errors, sql
from psycopg.rows import dict_row
from pydantic import BaseModel, ConfigDict

from memory.errors import InvalidInputError, NotFoundError

__all__ = ["ERASED_TABLES", "ErasedRows", "erase_rows", "erase_session", "tenant_sessions"]

# Every table that holds a session's rows, besides `sessions` itself.
ERASED_TABLES = ("messages", "message_terms", "tool_calls", "window_versions", "summaries",
                 "ledger", "compaction_events", "served_contexts", "served_counters",
                 "checkpoints", "lexical_cursors")


class ErasedRows(BaseModel):
    """What one erasure removed, by table; `already` when an earlier erasure had done it."""

    model_config = ConfigDict(frozen=True)

    tenant: str
    session: str
    erased_at: datetime
    already: bool
    rows: dict[str, int]

    @property
    def messages(self) -> int:
        return self.rows.get("messages", 0)


async def erase_rows(conn: AsyncConnection[Any], tenant: str, session: str) -> ErasedRows:
    """Erase one session inside the caller's transaction, on an admin's connection.

    FOR UPDATE on the session's row first: it waits for every write under way (they hold the
    row, or KEY SHARE on it), and every later one waits for this transaction and then reads the
    mark. Raises NotFoundError when nothing was ever stored for the session, so a mistyped id
    leaves no tombstone behind."""
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute("SELECT set_config('app.tenant', %s, true)", (tenant,))
    await cur.execute("SELECT erased_at FROM sessions WHERE tenant = %s AND session = %s"
                      " FOR UPDATE", (tenant, session))
    row = await cur.fetchone()
    if row is None:
        await cur.execute("SELECT 1 FROM messages WHERE tenant = %s AND session = %s LIMIT 1",
                          (tenant, session))
        if await cur.fetchone() is None:
            raise NotFoundError(f"no session {session!r} in tenant {tenant!r}")
        await cur.execute("INSERT INTO sessions (tenant, session) VALUES (%s, %s)",
                          (tenant, session))
        row = {"erased_at": None}
    already = row["erased_at"] is not None
    # Mark first: the ledger's trigger lets the rows of an erased session go, and only them.
    await cur.execute(
        "UPDATE sessions SET erased_at = coalesce(erased_at, now()), next_seq = 0,"
        " ledger_head = 0, window_tokens = 0, total_tokens = 0, rev = rev + 1,"
        " recent_requests = '{}', recent_appended = '{}', updated_at = now()"
        " WHERE tenant = %s AND session = %s RETURNING erased_at", (tenant, session))
    marked = await cur.fetchone()
    assert marked is not None
    counts: dict[str, int] = {}
    for table in ERASED_TABLES:
        await cur.execute(sql.SQL("DELETE FROM {} WHERE tenant = %s AND session = %s")
                          .format(sql.Identifier(table)), (tenant, session))
        counts[table] = cur.rowcount
    return ErasedRows(tenant=tenant, session=session, erased_at=marked["erased_at"],
                      already=already, rows=counts)


async def erase_session(admin_url: str, tenant: str, session: str) -> ErasedRows:
    """Erase one session in one transaction: all of it, or (on any error) nothing."""
    try:
        async with await AsyncConnection.connect(admin_url) as conn, conn.transaction():
            return await erase_rows(conn, tenant, session)
    except errors.InsufficientPrivilege:
        raise InvalidInputError(
            "admin_url", "this login may not delete from the archive (the app's login may "
            "not, by design): pass an admin's URL (--admin-url or "
            "LONGTHREAD_ADMIN_DATABASE_URL)") from None


async def tenant_sessions(admin_url: str, tenant: str) -> list[str]:
    """Every session of a tenant the archive knows, erased ones too: an erasure whose
    Temporal step failed is finished by erasing again (`--all` included)."""
    async with await AsyncConnection.connect(admin_url) as conn, conn.transaction():
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute("SELECT set_config('app.tenant', %s, true)", (tenant,))
        await cur.execute(
            "SELECT session FROM sessions WHERE tenant = %(t)s UNION"
            " SELECT DISTINCT session FROM messages WHERE tenant = %(t)s ORDER BY 1",
            {"t": tenant})
        return [r["session"] for r in await cur.fetchall()]
