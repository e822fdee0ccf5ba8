"""The store runs as a least-privilege login: no superuser, no BYPASSRLS, only what
longthread_app is granted. `longthread db setup` creates it; a worker that may not migrate
says so instead of failing later."""

from __future__ import annotations

import uuid

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from memory.models import Message
from memory.store.migrations import MIGRATIONS, setup
from memory.store.roles import SchemaError, ensure_schema, setup_database
from memory.store.store import Store
from tests.e2e.test_cli import cli


async def test_the_store_connects_as_a_login_without_superuser_or_bypassrls(
    store: Store,
) -> None:
    async with store.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT rolsuper, rolbypassrls, rolcreaterole, rolcreatedb FROM pg_roles"
            " WHERE rolname = session_user")
        assert await cur.fetchone() == {"rolsuper": False, "rolbypassrls": False,
                                        "rolcreaterole": False, "rolcreatedb": False}
        # Without the tenant set, row-level security shows nothing, even unscoped.
        await store.append_messages("lp-a", "s", [Message(id="m", role="user", content="x")])
        cur = await conn.execute("SELECT count(*) AS n FROM messages")
        assert await cur.fetchone() == {"n": 0}
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            await conn.execute("DELETE FROM messages")
    async with store.scoped("lp-b") as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            await conn.execute("UPDATE messages SET content = 'forged'")
    async with store.scoped("lp-b") as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            await conn.execute("SET LOCAL ROLE postgres")


async def test_db_setup_creates_the_role_and_a_worker_login_may_not_migrate(
    pg_url: str, app_url: str
) -> None:
    dbname = f"lp_{uuid.uuid4().hex[:8]}"
    async with await psycopg.AsyncConnection.connect(pg_url, autocommit=True) as conn:
        await conn.execute(f'CREATE DATABASE "{dbname}"')
    admin = make_conninfo(pg_url, dbname=dbname)
    async with await psycopg.AsyncConnection.connect(admin, autocommit=True) as conn:
        async with conn.transaction():  # an archive one migration behind
            await conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version integer"
                               " PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())")
            for version, statement in enumerate(MIGRATIONS[:-1], start=1):
                await conn.execute(statement.format(dim=psycopg.sql.Literal(384)))
                await conn.execute("INSERT INTO schema_version VALUES (%s)", (version,))
        await conn.execute("GRANT SELECT ON schema_version TO longthread_app")
    worker_login = make_conninfo(app_url, dbname=dbname)
    with pytest.raises(SchemaError, match="run `longthread db setup` as an admin"):
        await ensure_schema(worker_login, 384)
    code, out, err = await cli({"LONGTHREAD_ADMIN_DATABASE_URL": admin,
                                "LONGTHREAD_APP_PASSWORD": "pw2"},
                               "db", "setup", "--app-user", "lp_worker")
    assert code == 0, err
    assert f"schema at version {len(MIGRATIONS)}" in out and "lp_worker" in out
    assert await ensure_schema(worker_login, 384) == len(MIGRATIONS)
    assert await setup_database(admin, 384) == len(MIGRATIONS)  # idempotent
    async with await psycopg.AsyncConnection.connect(admin, autocommit=True) as conn:
        assert await setup(conn, 384) == len(MIGRATIONS)
        cur = await conn.execute("SELECT pg_has_role('lp_worker', 'longthread_app', 'MEMBER')")
        assert await cur.fetchone() == (True,)
