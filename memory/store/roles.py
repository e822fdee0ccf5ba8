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

__all__ = ["SchemaError", "create_login_role", "ensure_schema", "setup_database"]

ROLE_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


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
