"""An archive keeps to one embedding model. Two models' vectors can share a size (openai's
default of 384 dimensions is MiniLM's) and still not be comparable: a session indexed by one
and queried by the other would rank by noise with no error, so the second is refused."""

from __future__ import annotations

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from temporalio.client import Client

from longthread.client import Longthread
from longthread.settings import Settings
from memory.errors import InvalidInputError
from memory.store.db import open_pool
from memory.store.migrations import MIGRATIONS, migrate, stored_embedder
from memory.store.roles import ensure_schema
from memory.store.store import Store
from tests.store.old_schema import database_at

MINILM = Settings(embedder="local").embedding_model
OPENAI = Settings(embedder="openai",
                  openai_embedding_model="text-embedding-3-small").embedding_model
REFUSED = (r"^LONGTHREAD_EMBEDDER: the archive holds vectors made by 'all-MiniLM-L6-v2', and "
           r"these settings make them with ")


def test_each_embedder_names_its_own_model() -> None:
    assert MINILM == "all-MiniLM-L6-v2" and Settings(embedder="mpnet").embedding_model == (
        "all-mpnet-base-v2")
    assert OPENAI == "openai:text-embedding-3-small" != Settings(
        embedder="openai", openai_embedding_model="text-embedding-3-large").embedding_model


async def test_the_first_worker_claims_the_archive_and_another_model_is_refused(
        pg_url: str, app_url: str, client: Client) -> None:
    # An archive from before models were recorded: migrated, no model named.
    async with database_at(pg_url, len(MIGRATIONS)) as url:
        worker_login = make_conninfo(app_url, dbname=conninfo_to_dict(url)["dbname"])
        async with await psycopg.AsyncConnection.connect(worker_login, autocommit=True) as app:
            # The app's login may add the one key, and nothing else, and change nothing.
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                await app.execute("INSERT INTO longthread_meta VALUES ('embedding_dim2', '1')")
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                await app.execute("UPDATE longthread_meta SET value = '1'")
            assert await stored_embedder(app) is None
        # The first worker claims the archive for its model, with a least-privilege login ...
        assert await ensure_schema(worker_login, 384, MINILM) == len(MIGRATIONS)
        assert await ensure_schema(url, 384, MINILM) == len(MIGRATIONS)  # and may restart
        assert await migrate(url, 384, MINILM) == len(MIGRATIONS)
        # ... and a worker of another model at the same size is refused, with any login,
        with pytest.raises(InvalidInputError, match=REFUSED + r"'openai:text-embedding-3-small'"):
            await ensure_schema(worker_login, 384, OPENAI)
        with pytest.raises(InvalidInputError, match=REFUSED):
            await ensure_schema(url, 384, OPENAI)
        with pytest.raises(InvalidInputError, match=REFUSED):
            await migrate(url, 384, OPENAI)
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            assert await stored_embedder(conn) == MINILM  # the refusals changed nothing

        # ... and so is a client whose settings would embed its queries with the other model.
        settings = Settings(database_url=url, embedder="openai", openai_api_key="sk-test",
                            openai_embedding_model="text-embedding-3-small")
        async with Longthread(client, settings) as other:
            await other.store()
            with pytest.raises(InvalidInputError, match=REFUSED):
                other.embedder()
        pool = await open_pool(url)  # the CLI passes a store of its own: checked the same
        try:
            passed = Longthread(client, settings, store=Store(pool))
            await passed.store()
            with pytest.raises(InvalidInputError, match=REFUSED):
                passed.embedder()
        finally:
            await pool.close()
        async with Longthread(client, Settings(database_url=url, embedder="local")) as same:
            await same.store()
            assert same.embedder().dim == 384
