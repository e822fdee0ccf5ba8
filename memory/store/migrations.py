"""Schema migrations: an ordered list plus a version table, applied by an explicit `setup()`.

Idempotent and safe to run from several processes at once (an advisory lock serialises them).
The embedding column is sized by the configured embedder; the size is recorded, and a later
setup with another size fails with a clear error instead of corrupting the archive.
"""

from __future__ import annotations

from importlib import resources
from importlib.resources.abc import Traversable
from typing import Any

from psycopg import AsyncConnection, sql
from psycopg.rows import tuple_row

from memory.errors import InvalidInputError
from memory.store.schema_check import check_not_newer

__all__ = ["MIGRATIONS", "migrate", "setup"]

_LOCK_KEY = 7_420_117  # arbitrary constant for pg_advisory_lock


def _load(folder: Traversable) -> list[sql.SQL]:
    """The migrations, in order: `sql/NN_*.sql`, each a script whose `{dim}` is the vector
    size (`{{` and `}}` stand for literal braces). They are package data, so they ship in the
    wheel; version N is the file numbered N, and the numbers must run 1, 2, 3… unbroken."""
    scripts = sorted((p for p in folder.iterdir() if p.name.endswith(".sql")),
                     key=lambda p: int(p.name.split("_", 1)[0]))
    numbers = [int(p.name.split("_", 1)[0]) for p in scripts]
    if numbers != list(range(1, len(scripts) + 1)):
        raise RuntimeError(f"memory/store/sql: migrations numbered {numbers}, not 1..N")
    return [sql.SQL(p.read_text(encoding="utf-8")) for p in scripts]


MIGRATIONS: list[sql.SQL] = _load(resources.files("memory.store") / "sql")


async def migrate(url: str, embedding_dim: int = 384, embedder: str | None = None) -> int:
    """Open a short-lived connection and run `setup` on it."""
    async with await AsyncConnection.connect(url, autocommit=True) as conn:
        return await setup(conn, embedding_dim, embedder)


async def _scalar(conn: AsyncConnection[Any], query: str) -> Any:
    async with conn.cursor(row_factory=tuple_row) as cur:
        await cur.execute(query)
        row = await cur.fetchone()
    return row[0] if row else None


async def setup(conn: AsyncConnection[Any], embedding_dim: int = 384,
                embedder: str | None = None) -> int:
    """Apply every pending migration; returns the schema version now in force. With
    `embedder`, the archive keeps to that model's vectors (`claim_embedder`)."""
    if not 1 <= embedding_dim <= 16_000:
        raise InvalidInputError("embedding_dim", "must be between 1 and 16000")
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_version ("
            " version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        current = int(await _scalar(conn, "SELECT coalesce(max(version), 0) FROM schema_version"))
        check_not_newer(current, len(MIGRATIONS), "longthread")
        for version, statement in enumerate(MIGRATIONS, start=1):
            if version <= current:
                continue
            await conn.execute(statement.format(dim=sql.Literal(embedding_dim)))
            await conn.execute("INSERT INTO schema_version (version) VALUES (%s)", (version,))
            current = version
        check_embedding_dim(await stored_embedding_dim(conn), embedding_dim)
        if embedder is not None:
            await claim_embedder(conn, embedder)
    return current


async def stored_schema_version(conn: AsyncConnection[Any]) -> int:
    """The archive's schema version: 0 before the first migration, even with no table yet."""
    if not await _scalar(conn, "SELECT to_regclass('schema_version') IS NOT NULL"):
        return 0
    return int(await _scalar(conn, "SELECT coalesce(max(version), 0) FROM schema_version"))


async def stored_embedding_dim(conn: AsyncConnection[Any]) -> int | None:
    """The vector size the archive was created for; None before the first migration."""
    value = await _scalar(conn, "SELECT value FROM longthread_meta WHERE key = 'embedding_dim'")
    return None if value is None else int(value)


def check_embedding_dim(stored: int | None, embedding_dim: int) -> None:
    """Vectors of another size would fail every embed with pgvector's own error: refuse here."""
    if stored is not None and stored != embedding_dim:
        raise InvalidInputError(
            "embedding_dim", f"the archive was created for {stored}-dimensional embeddings, "
            f"not {embedding_dim} (LONGTHREAD_EMBEDDER and LONGTHREAD_EMBEDDING_DIM must match "
            "the archive)")


async def stored_embedder(conn: AsyncConnection[Any]) -> str | None:
    """The model whose vectors the archive holds; None until a worker or setup named one."""
    value = await _scalar(conn, "SELECT value FROM longthread_meta WHERE key = 'embedder'")
    return None if value is None else str(value)


async def claim_embedder(conn: AsyncConnection[Any], embedder: str) -> None:
    """The first model to index an archive keeps it. Vectors of two models are not
    comparable even at one size (openai's default of 384 dimensions is MiniLM's size), so a
    session indexed by one and queried by the other would rank by noise, with no error."""
    await conn.execute("INSERT INTO longthread_meta VALUES ('embedder', %s)"
                       " ON CONFLICT (key) DO NOTHING", (embedder,))
    check_embedder(await stored_embedder(conn), embedder)


def check_embedder(stored: str | None, embedder: str) -> None:
    if stored is not None and stored != embedder:
        raise InvalidInputError(
            "LONGTHREAD_EMBEDDER", f"the archive holds vectors made by {stored!r}, and these "
            f"settings make them with {embedder!r}; two models' vectors cannot be compared. "
            "Set LONGTHREAD_EMBEDDER (local: all-MiniLM-L6-v2, mpnet: all-mpnet-base-v2, "
            "openai: openai:<LONGTHREAD_OPENAI_EMBEDDING_MODEL>) to the archive's model, or "
            "use a new archive (LONGTHREAD_DATABASE_URL or LONGTHREAD_DATA_DIR)")
