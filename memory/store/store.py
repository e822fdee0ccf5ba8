"""The archive, the ledger and checkpoints in Postgres: every call is scoped by tenant.

Each operation runs in a transaction as the `longthread_app` role with `app.tenant` set, so
row-level security (FORCE'd) filters by tenant even if a query forgot to. Writes are
idempotent: a retried batch inserts nothing twice.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

import numpy as np
from pgvector import Vector
from psycopg import AsyncConnection
from psycopg.rows import DictRow
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool
from pydantic import BaseModel, ConfigDict

from memory.models import CompactionRecord, Message, ScoredMessage, ToolCall

__all__ = ["RRF_K", "SessionInfo", "Store"]

RRF_K = 60  # reciprocal-rank-fusion constant from Cormack et al.; the usual default
# Lexemes that Postgres's own statistics say occur in more than this many archived rows (or in
# more than a quarter of them) are left out of the full-text leg: in a big archive they match
# thousands of rows, which makes the scan slow while adding almost nothing to the ranking
# (BM25 would give them ~zero idf anyway). Small archives keep nearly every word.
LEXICAL_ROW_BUDGET = 300
COMMON_LEXEME_FRACTION = 0.25
COMMON_REFRESH_SECONDS = 600.0


class SessionInfo(BaseModel):
    model_config = ConfigDict(frozen=True)

    session: str
    messages: int
    first_at: datetime | None
    last_at: datetime | None


def _row_to_message(row: dict[str, Any]) -> Message:
    return Message(
        id=row["id"], role=row["role"], content=row["content"], created_at=row["created_at"],
        name=row["name"], tool_call_id=row["tool_call_id"],
        tool_calls=tuple(ToolCall.model_validate(c) for c in row["tool_calls"]),
        metadata=row["metadata"],
    )


_SEARCH = """
WITH vec AS (
    SELECT id, row_number() OVER (ORDER BY embedding <=> %(q)s) AS rank
    FROM (SELECT id, embedding FROM messages
          WHERE tenant = %(tenant)s AND session = %(session)s AND embedding IS NOT NULL
            AND (%(since)s::timestamptz IS NULL OR created_at >= %(since)s)
            AND (%(until)s::timestamptz IS NULL OR created_at < %(until)s)
          ORDER BY embedding <=> %(q)s LIMIT %(k)s) hits
), lex AS (
    SELECT id, row_number() OVER (ORDER BY ts_rank_cd(tsv, query) DESC, seq) AS rank
    FROM messages, to_tsquery('simple', %(tsquery)s) AS query
    WHERE %(tsquery)s <> '' AND tenant = %(tenant)s AND session = %(session)s AND tsv @@ query
      AND (%(since)s::timestamptz IS NULL OR created_at >= %(since)s)
      AND (%(until)s::timestamptz IS NULL OR created_at < %(until)s)
    ORDER BY ts_rank_cd(tsv, query) DESC, seq LIMIT %(k)s
), fused AS (
    SELECT id, sum(1.0 / (%(rrf)s + rank)) AS score
    FROM (SELECT * FROM vec UNION ALL SELECT * FROM lex) ranked GROUP BY id
)
SELECT m.*, fused.score FROM fused
JOIN messages m ON m.tenant = %(tenant)s AND m.session = %(session)s AND m.id = fused.id
ORDER BY fused.score DESC, m.seq LIMIT %(k)s
"""


class Store:
    def __init__(self, pool: AsyncConnectionPool[AsyncConnection[DictRow]],
                 ef_search: int = 200) -> None:
        self.pool = pool
        self.ef_search = ef_search
        self._common: list[str] = []
        self._common_at = -math.inf

    async def _common_lexemes(self) -> list[str]:
        """Very frequent lexemes, from pg_stats (what ANALYZE saw), refreshed now and then.

        Read as the connecting user, not the tenant role: Postgres hides statistics of
        row-secured tables from roles under RLS. Only the pruning uses them; no row is read.
        """
        if time.monotonic() - self._common_at > COMMON_REFRESH_SECONDS:
            async with self.pool.connection() as conn:
                cur = await conn.execute(
                    "SELECT e FROM pg_stats s, unnest(s.most_common_elems::text::text[],"
                    " s.most_common_elem_freqs) AS u(e, f),"
                    " (SELECT greatest(reltuples, 1) AS n FROM pg_class"
                    "  WHERE oid = 'messages'::regclass) AS t"
                    " WHERE s.tablename = 'messages' AND s.attname = 'tsv'"
                    " AND (f * t.n > %s OR f > %s)",
                    (LEXICAL_ROW_BUDGET, COMMON_LEXEME_FRACTION))
                self._common = [row["e"] for row in await cur.fetchall()]
            self._common_at = time.monotonic()
        return self._common

    async def _tsquery(self, conn: AsyncConnection[DictRow], text: str,
                       common: list[str]) -> str:
        """OR of the query's informative lexemes (AND of all when every one is common)."""
        cur = await conn.execute(
            "SELECT tsvector_to_array(to_tsvector('english', %s)) AS every,"
            " tsvector_to_array(ts_delete(to_tsvector('english', %s), %s::text[])) AS rare",
            (text, text, common))
        row = await cur.fetchone()
        if not row or not row["every"]:
            return ""
        lexemes, joiner = (row["rare"], " | ") if row["rare"] else (row["every"], " & ")
        return joiner.join("'" + lexeme.replace("'", "''") + "'" for lexeme in lexemes)

    @asynccontextmanager
    async def scoped(self, tenant: str) -> AsyncIterator[AsyncConnection[DictRow]]:
        """A transaction bound to one tenant, under row-level security."""
        async with self.pool.connection() as conn, conn.transaction():
            await conn.execute("SET LOCAL ROLE longthread_app")
            await conn.execute("SELECT set_config('app.tenant', %s, true)", (tenant,))
            await conn.execute("SELECT set_config('hnsw.ef_search', %s, true)",
                               (str(self.ef_search),))
            await conn.execute("SET LOCAL hnsw.iterative_scan = relaxed_order")
            yield conn

    async def archive(
        self, tenant: str, session: str, messages: Sequence[tuple[int, Message]],
        embeddings: Sequence[Sequence[float] | None] | None = None,
    ) -> int:
        """Insert (seq, message) pairs; ids already archived are left as they are."""
        if not messages:
            return 0
        vectors = embeddings or [None] * len(messages)
        rows = [
            (tenant, session, m.id, seq, m.role, m.content, m.name, m.created_at, m.tool_call_id,
             Jsonb([c.model_dump() for c in m.tool_calls]), Jsonb(m.metadata),
             Vector(np.asarray(v, dtype=np.float32)) if v is not None else None)
            for (seq, m), v in zip(messages, vectors, strict=True)
        ]
        async with self.scoped(tenant) as conn, conn.cursor() as cur:
            await cur.executemany(
                "INSERT INTO messages (tenant, session, id, seq, role, content, name, created_at,"
                " tool_call_id, tool_calls, metadata, embedding)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
                " ON CONFLICT (tenant, session, id) DO NOTHING",
                rows, returning=False,
            )
            return max(cur.rowcount, 0)

    async def missing_ids(self, tenant: str, session: str, ids: Sequence[str]) -> list[str]:
        async with self.scoped(tenant) as conn:
            cur = await conn.execute(
                "SELECT id FROM messages WHERE tenant = %s AND session = %s AND id = ANY(%s)",
                (tenant, session, list(ids)))
            present = {row["id"] for row in await cur.fetchall()}
        return [i for i in ids if i not in present]

    async def get_messages(self, tenant: str, session: str, ids: Sequence[str]) -> list[Message]:
        """Originals by id, in the order asked for."""
        async with self.scoped(tenant) as conn:
            cur = await conn.execute(
                "SELECT * FROM messages WHERE tenant = %s AND session = %s AND id = ANY(%s)",
                (tenant, session, list(ids)))
            found = {row["id"]: _row_to_message(row) for row in await cur.fetchall()}
        return [found[i] for i in ids if i in found]

    async def all_messages(self, tenant: str, session: str) -> list[Message]:
        async with self.scoped(tenant) as conn:
            cur = await conn.execute(
                "SELECT * FROM messages WHERE tenant = %s AND session = %s ORDER BY seq",
                (tenant, session))
            return [_row_to_message(row) for row in await cur.fetchall()]

    async def count(self, tenant: str, session: str) -> int:
        async with self.scoped(tenant) as conn:
            cur = await conn.execute(
                "SELECT count(*) AS n FROM messages WHERE tenant = %s AND session = %s",
                (tenant, session))
            row = await cur.fetchone()
        return int(row["n"]) if row else 0

    async def search(
        self, tenant: str, session: str, text: str, embedding: Sequence[float], k: int = 10,
        *, neighbours: int = 0, since: datetime | None = None, until: datetime | None = None,
    ) -> list[ScoredMessage]:
        """Hybrid retrieval: HNSW cosine + full text, fused by reciprocal rank."""
        common = await self._common_lexemes()
        async with self.scoped(tenant) as conn:
            params = {"tenant": tenant, "session": session, "k": k, "rrf": RRF_K,
                      "tsquery": await self._tsquery(conn, text, common),
                      "q": Vector(np.asarray(embedding, dtype=np.float32)),
                      "since": since, "until": until}
            cur = await conn.execute(_SEARCH, params, prepare=False)
            rows = await cur.fetchall()
            hits = [(row, float(row["score"])) for row in rows]
            if neighbours and hits:
                seqs = sorted({row["seq"] + d for row, _ in hits
                               for d in range(-neighbours, neighbours + 1) if d})
                cur = await conn.execute(
                    "SELECT * FROM messages WHERE tenant = %s AND session = %s AND seq = ANY(%s)",
                    (tenant, session, seqs))
                shown = {row["id"] for row, _ in hits}
                extra = [r for r in await cur.fetchall() if r["id"] not in shown]
                by_seq = {row["seq"]: score for row, score in hits}
                for row in extra:
                    seq = int(row["seq"])
                    near = min(by_seq, key=lambda s: abs(s - seq))
                    hits.append((row, by_seq[near] * 0.5))
        return [ScoredMessage(message=_row_to_message(row), score=score, session=session,
                              seq=row["seq"]) for row, score in hits]

    async def exact_neighbours(self, tenant: str, session: str, embedding: Sequence[float],
                               k: int = 10) -> list[str]:
        """Exact cosine top-k with the index disabled: the ground truth for recall@k."""
        async with self.scoped(tenant) as conn:
            await conn.execute("SET LOCAL enable_indexscan = off")
            await conn.execute("SET LOCAL enable_bitmapscan = off")
            cur = await conn.execute(
                "SELECT id FROM messages WHERE tenant = %s AND session = %s"
                " ORDER BY embedding <=> %s LIMIT %s",
                (tenant, session, Vector(np.asarray(embedding, dtype=np.float32)), k))
            return [row["id"] for row in await cur.fetchall()]

    async def append_ledger(self, tenant: str, session: str, record: CompactionRecord) -> bool:
        """Append once: a retried write of the same record id is a no-op."""
        async with self.scoped(tenant) as conn:
            cur = await conn.execute(
                "INSERT INTO ledger (tenant, session, seq, id, record) VALUES (%s, %s, %s, %s, %s)"
                " ON CONFLICT DO NOTHING",
                (tenant, session, record.seq, record.id, Jsonb(record.model_dump(mode="json"))))
            return cur.rowcount == 1

    async def ledger(self, tenant: str, session: str) -> list[CompactionRecord]:
        async with self.scoped(tenant) as conn:
            cur = await conn.execute(
                "SELECT record FROM ledger WHERE tenant = %s AND session = %s ORDER BY seq",
                (tenant, session))
            return [CompactionRecord.model_validate(r["record"]) for r in await cur.fetchall()]

    async def record_served(self, tenant: str, session: str,
                            records: Sequence[tuple[int, int, str]]) -> int:
        """Append (seq, turn, json) served-context records; retries insert nothing twice."""
        async with self.scoped(tenant) as conn, conn.cursor() as cur:
            await cur.executemany(
                "INSERT INTO served_contexts (tenant, session, seq, turn, record)"
                " VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                [(tenant, session, seq, turn, Jsonb(json.loads(doc)))
                 for seq, turn, doc in records])
            return max(cur.rowcount, 0)

    async def served(self, tenant: str, session: str, at_turn: int | None = None
                     ) -> list[dict[str, Any]]:
        """Served-context records, oldest first; with `at_turn`, those served up to that turn."""
        async with self.scoped(tenant) as conn:
            cur = await conn.execute(
                "SELECT record FROM served_contexts WHERE tenant = %s AND session = %s"
                " AND (%s::int IS NULL OR turn <= %s) ORDER BY seq",
                (tenant, session, at_turn, at_turn))
            return [row["record"] for row in await cur.fetchall()]

    async def save_checkpoint(self, tenant: str, session: str, state: str, version: int) -> None:
        async with self.scoped(tenant) as conn:
            await conn.execute(
                "INSERT INTO checkpoints (tenant, session, state, version) VALUES (%s, %s, %s, %s)"
                " ON CONFLICT (tenant, session) DO UPDATE SET state = EXCLUDED.state,"
                " version = EXCLUDED.version, updated_at = now()"
                " WHERE checkpoints.version <= EXCLUDED.version",
                (tenant, session, Jsonb(json.loads(state)), version))

    async def load_checkpoint(self, tenant: str, session: str) -> tuple[str, int] | None:
        async with self.scoped(tenant) as conn:
            cur = await conn.execute(
                "SELECT state, version FROM checkpoints WHERE tenant = %s AND session = %s",
                (tenant, session))
            row = await cur.fetchone()
        return (json.dumps(row["state"]), int(row["version"])) if row else None

    async def sessions(self, tenant: str) -> list[SessionInfo]:
        async with self.scoped(tenant) as conn:
            cur = await conn.execute(
                "SELECT session, count(*) AS messages, min(created_at) AS first_at,"
                " max(created_at) AS last_at FROM messages WHERE tenant = %s"
                " GROUP BY session ORDER BY session", (tenant,))
            return [SessionInfo.model_validate(row) for row in await cur.fetchall()]
