"""A store call that cannot get a connection says which database, as the CLI's own check
does (an SRE's user test: with Postgres down, a client's `context()` raised psycopg's
PoolTimeout, naming nothing, after 30 s)."""

from __future__ import annotations

import pytest

from memory.store.db import open_pool
from memory.store.store import Store


async def test_no_connection_in_time_names_the_archive(app_url: str) -> None:
    pool = await open_pool(app_url, min_size=1, max_size=1, timeout=0.5)
    try:
        store = Store(pool)
        async with store.connection():  # the only connection, held
            with pytest.raises(ConnectionError) as info:
                await store.ledger("acme", "held")
        message = str(info.value)
        assert message.startswith("archive database unreachable (longthread_tester@")
        assert "couldn't get a connection after 0.50 sec" in message
        assert "tester-password" not in message
        assert await store.ledger("acme", "held") == []  # released: it reads again
    finally:
        await pool.close()
