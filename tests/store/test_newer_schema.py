"""A worker older than the archive's schema refuses it instead of starting on tables whose
meaning changed under it; so does `setup` (`db setup`, `dev`). An archive at exactly this
code's version is still accepted, and nothing is written to a refused one."""

from __future__ import annotations

import psycopg
import pytest

from longthread.client import Longthread
from longthread.settings import Settings
from memory.store.db import open_pool
from memory.store.migrations import MIGRATIONS, setup
from memory.store.roles import SchemaError, ensure_schema
from memory.store.store import Store
from tests.store.old_schema import database_at


async def test_an_archive_newer_than_the_code_is_refused(pg_url: str) -> None:
    known = len(MIGRATIONS)
    async with database_at(pg_url, known) as url:
        assert await ensure_schema(url, 384) == known  # current: accepted
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            await conn.execute("INSERT INTO schema_version (version) VALUES (%s)", (known + 2,))
        with pytest.raises(SchemaError, match=(
                f"the archive's schema is at version {known + 2}, newer than this worker's "
                f"{known}: upgrade the worker")):
            await ensure_schema(url, 384, "all-MiniLM-L6-v2")
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            with pytest.raises(SchemaError, match="newer than this longthread's"):
                await setup(conn, 384, "all-MiniLM-L6-v2")
            cur = await conn.execute("SELECT value FROM longthread_meta WHERE key = 'embedder'")
            assert await cur.fetchone() is None  # the refused worker claimed nothing


async def test_a_client_on_an_archive_behind_its_code_says_to_run_setup(pg_url: str) -> None:
    """A client never migrates; on an archive one version behind it failed on the first
    missing table with a traceback (upgrade test, session 31)."""
    known = len(MIGRATIONS)
    async with database_at(pg_url, known - 1) as url:
        pool = await open_pool(url)
        try:
            lt = Longthread(None, Settings(), store=Store(pool))  # type: ignore[arg-type]
            with pytest.raises(SchemaError, match=(
                    f"the archive's schema is at version {known - 1}, this client's is "
                    f"{known}: run `longthread db setup`")):
                await lt.store()
        finally:
            await pool.close()


async def test_a_client_on_an_archive_ahead_of_its_code_goes_on(pg_url: str) -> None:
    """An upgrade migrates first and replaces clients last: a client of the version before
    must keep starting on the migrated archive (second review of session 31)."""
    known = len(MIGRATIONS)
    async with database_at(pg_url, known) as url:
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            await conn.execute("INSERT INTO schema_version (version) VALUES (%s)", (known + 1,))
        pool = await open_pool(url)
        try:
            store = Store(pool)
            assert await Longthread(None, Settings(), store=store).store() is store  # type: ignore[arg-type]
        finally:
            await pool.close()
