"""A throwaway database stopped at an older schema version, for upgrade tests."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import psycopg
from psycopg import sql

from memory.store.migrations import MIGRATIONS

__all__ = ["database_at", "migrate_to"]


async def migrate_to(conn: psycopg.AsyncConnection[Any], version: int, dim: int = 384) -> None:
    """Migrations 1..`version` applied and recorded on `conn`'s database, as `setup` would
    have left it then."""
    await conn.execute("CREATE TABLE schema_version (version integer PRIMARY KEY,"
                       " applied_at timestamptz NOT NULL DEFAULT now())")
    for n, statement in enumerate(MIGRATIONS[:version], start=1):
        await conn.execute(statement.format(dim=sql.Literal(dim)))
        await conn.execute("INSERT INTO schema_version (version) VALUES (%s)", (n,))


@asynccontextmanager
async def database_at(pg_url: str, version: int, dim: int = 384) -> AsyncIterator[str]:
    """A new database with migrations 1..`version` applied and recorded, as `setup` would
    have left it then; dropped afterwards. Yields its URL."""
    name = f"lt_v{version}_{uuid.uuid4().hex[:8]}"
    async with await psycopg.AsyncConnection.connect(pg_url, autocommit=True) as admin:
        await admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = psycopg.conninfo.make_conninfo(pg_url, dbname=name)
    try:
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            await migrate_to(conn, version, dim)
        yield url
    finally:
        async with await psycopg.AsyncConnection.connect(pg_url, autocommit=True) as admin:
            await admin.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(
                sql.Identifier(name)))
