"""Least privilege: an admin migrates and creates the application's login role; the worker and
the client connect as that role, which can do nothing but what `longthread_app` is granted.

`longthread_app` (created by the migrations, NOLOGIN) holds the table grants; a login role is a
member of it, so `Store.scoped`'s `SET LOCAL ROLE longthread_app` works, and row-level security
(FORCE'd) applies, since the role neither owns the tables nor bypasses RLS.
"""

from __future__ import annotations

import re
from typing import Any

from psycopg import AsyncConnection, errors, sql

from memory.errors import InvalidInputError
from memory.store.migrations import (
    MIGRATIONS,
    check_embedding_dim,
    claim_embedder,
    setup,
    stored_embedding_dim,
    stored_schema_version,
)
from memory.store.schema_check import SchemaError, check_not_newer

__all__ = ["APP_TABLE_GRANTS", "SchemaError", "create_login_role", "ensure_schema",
           "missing_grants", "setup_database"]

ROLE_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
# What `longthread_app` holds on each table once every migration has run (the GRANTs of
# memory/store/sql, summed; `tests/store/test_grants.py` checks this against a migrated
# archive). `health` checks it is still so: a restore that dropped a grant left every append
# retrying without a word while `health` said ok (an SRE's user test).
APP_TABLE_GRANTS: dict[str, tuple[str, ...]] = {
    "checkpoints": ("INSERT", "SELECT", "UPDATE"),
    "compaction_events": ("INSERT", "SELECT"),
    "ledger": ("INSERT", "SELECT"),
    "lexical_cursors": ("INSERT", "SELECT"),
    "longthread_meta": ("INSERT", "SELECT"),
    "message_terms": ("INSERT", "SELECT"),
    "messages": ("INSERT", "SELECT"),
    "schema_version": ("SELECT",),
    "served_contexts": ("INSERT", "SELECT"),
    "served_counters": ("INSERT", "SELECT", "UPDATE"),
    "sessions": ("INSERT", "SELECT", "UPDATE"),
    "summaries": ("INSERT", "SELECT"),
    "tool_calls": ("INSERT", "SELECT"),
    "window_versions": ("INSERT", "SELECT"),
}


async def missing_grants(conn: AsyncConnection[Any]) -> list[str]:
    """What `longthread_app` should hold on the archive and does not, as "SELECT on sessions":
    its use of the schema, then its table grants (`APP_TABLE_GRANTS`)."""
    cur = await conn.execute("SELECT has_schema_privilege('longthread_app', current_schema(), "
                             "'USAGE'), current_schema()")
    row = await cur.fetchone()
    if row is not None and not row[0]:
        return [f"USAGE on schema {row[1]}"]
    pairs = [(table, privilege) for table, privileges in APP_TABLE_GRANTS.items()
             for privilege in privileges]
    cur = await conn.execute(
        "SELECT t.privilege || ' on ' || t.name FROM unnest(%s::text[], %s::text[]) "
        "WITH ORDINALITY AS t(name, privilege, n) WHERE to_regclass(t.name) IS NULL OR NOT "
        "has_table_privilege('longthread_app', to_regclass(t.name), t.privilege) ORDER BY t.n",
        ([t for t, _ in pairs], [p for _, p in pairs]))
    return [str(r[0]) for r in await cur.fetchall()]


async def create_login_role(conn: AsyncConnection[Any], user: str,
                            password: str | None) -> None:
    """Create (or update) a non-superuser login role that is a member of longthread_app."""
    if not ROLE_NAME.match(user):
        raise InvalidInputError("app_user", "must be 1-63 of a-z 0-9 _, not starting with a digit")
    role = sql.Identifier(user)
    cur = await conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (user,))
    verb = sql.SQL("ALTER") if await cur.fetchone() else sql.SQL("CREATE")
    await conn.execute(sql.SQL(
        "{} ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS PASSWORD {}"
    ).format(verb, role, sql.Literal(password) if password else sql.NULL))
    await conn.execute(sql.SQL("GRANT longthread_app TO {}").format(role))


async def setup_database(admin_url: str, embedding_dim: int, app_user: str | None = None,
                         app_password: str | None = None) -> int:
    """What `longthread db setup` does, as an admin: migrate, then create the login role.
    It records no embedding model: the admin's settings need not be the workers', and the
    first worker records its own (`claim_embedder`)."""
    async with await AsyncConnection.connect(admin_url, autocommit=True) as conn:
        version = await setup(conn, embedding_dim)
        if app_user:
            await create_login_role(conn, app_user, app_password)
    return version


async def ensure_schema(url: str, embedding_dim: int, embedder: str | None = None) -> int:
    """At worker start: migrate if this login may, else require the schema to be current.
    The archive's vectors must be this worker's: their size, and (`embedder`) their model."""
    async with await AsyncConnection.connect(url, autocommit=True) as conn:
        current = await stored_schema_version(conn)
        check_not_newer(current, len(MIGRATIONS))
        if current == len(MIGRATIONS):
            # Current, so nothing to migrate; the vectors must still be the archive's size
            # (`setup` checks the same on the path that migrates).
            check_embedding_dim(await stored_embedding_dim(conn), embedding_dim)
            if embedder is not None:
                await claim_embedder(conn, embedder)
            return current
        try:
            return await setup(conn, embedding_dim, embedder)
        except errors.InsufficientPrivilege:
            raise SchemaError(
                f"the archive's schema is at version {current} of {len(MIGRATIONS)} and this "
                "login may not migrate it: run `longthread db setup` as an admin") from None
