"""What the application role holds on the archive, in one list (`APP_TABLE_GRANTS`), checked
here against what the migrations grant, and by `health` against what the archive still grants
(an SRE's user test: a restore that dropped a grant left appends retrying without a word while
`health` said ok)."""

from __future__ import annotations

from pathlib import Path

import psycopg

from longthread.health import check_health
from longthread.settings import Settings
from memory.store.migrations import MIGRATIONS
from memory.store.roles import APP_TABLE_GRANTS, missing_grants
from tests.store.old_schema import database_at


async def test_the_list_is_what_the_migrations_grant(pg_url: str) -> None:
    async with database_at(pg_url, len(MIGRATIONS)) as url:
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            cur = await conn.execute(
                "SELECT table_name, privilege_type FROM information_schema.role_table_grants "
                "WHERE grantee = 'longthread_app'")
            granted: dict[str, set[str]] = {}
            for table, privilege in await cur.fetchall():
                granted.setdefault(table, set()).add(privilege)
            assert granted == {t: set(p) for t, p in APP_TABLE_GRANTS.items()}
            assert await missing_grants(conn) == []


async def test_a_dropped_grant_is_named_by_health(pg_url: str, tmp_path: Path) -> None:
    async with database_at(pg_url, len(MIGRATIONS)) as url:
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            await conn.execute("REVOKE SELECT ON sessions FROM longthread_app")
            await conn.execute("REVOKE INSERT ON ledger FROM longthread_app")
            assert await missing_grants(conn) == ["INSERT on ledger", "SELECT on sessions"]
        settings = Settings(data_dir=tmp_path / "nodata", database_url=url,
                            temporal_address="127.0.0.1:1")
        (archive,) = [c for c in await check_health(settings) if c.name == "archive"]
        assert not archive.ok
        assert "the application role longthread_app lacks INSERT on ledger (and 1 more)" \
            in archive.detail
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            await conn.execute("REVOKE USAGE ON SCHEMA public FROM longthread_app, PUBLIC")
            assert await missing_grants(conn) == ["USAGE on schema public"]
            await conn.execute(_restoring_grants())  # what the operator's guide says to run
            assert await missing_grants(conn) == []


def _restoring_grants() -> bytes:
    """The SQL block of docs/operations.md's "Restoring grants"."""
    guide = (Path(__file__).parents[2] / "docs" / "operations.md").read_text()
    section = guide.split("### Restoring grants", 1)[1]
    return section.split("```sql\n", 1)[1].split("```", 1)[0].encode()
