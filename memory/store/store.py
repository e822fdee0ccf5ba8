"""The archive, the ledger and checkpoints in Postgres: every call is scoped by tenant.

Each operation runs in a transaction as the `longthread_app` role with `app.tenant` set, so
row-level security (FORCE'd) filters by tenant even if a query forgot to. Writes are
idempotent: a retried batch inserts nothing twice.
"""

from __future__ import annotations

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

from memory.audit import ServedContext
from memory.models import CompactionRecord, Message, ScoredMessage
from memory.store.rows import row_to_message
from memory.store.sessions import SessionStore

__all__ = ["RRF_K", "SessionInfo", "Store"]

RRF_K = 60  # reciprocal-rank-fusion constant from Cormack et al.; the usual default
BM25_K1 = 1.2  # the usual Okapi BM25 parameters (Robertson & Zaragoza)
BM25_B = 0.75
LEXEME_POSTINGS_CAP = 2000  # see the search query: lexemes this common are not ranked by


class SessionInfo(BaseModel):
    model_config = ConfigDict(frozen=True)

    session: str
    messages: int
    first_at: datetime | None
    last_at: datetime | None


# BM25 over the inverted index; shared by the hybrid search and the lexical-only search.
_LEXICAL_CTES = """
postings AS (
    -- Each query lexeme's postings in this session, read through the inverted index's primary
    -- key (usable under row-level security) and capped: a lexeme with `cap` postings or more
    -- is too common to rank by, like a stop word (BM25 gives it little weight anyway), and
    -- reading all of them would make a big session's search slow.
    SELECT l.lexeme, p.id, p.tf, p.doc_len, count(*) OVER (PARTITION BY l.lexeme) AS df
    FROM unnest(tsvector_to_array(to_tsvector('english', %(text)s))) AS l(lexeme),
    LATERAL (SELECT id, tf, doc_len FROM message_terms
             WHERE tenant = %(tenant)s AND session = %(session)s AND lexeme = l.lexeme
             LIMIT %(cap)s) AS p
), kept AS (
    SELECT * FROM postings WHERE df < %(cap)s
), corpus AS (
    SELECT greatest((SELECT coalesce(max(seq), 0) + 1 FROM messages
                     WHERE tenant = %(tenant)s AND session = %(session)s),
                    (SELECT max(df) FROM kept)) AS n,
           coalesce((SELECT avg(doc_len) FROM kept), 1) AS avg_len
), lex AS (
    -- Okapi BM25 over the kept postings.
    SELECT t.id, row_number() OVER (ORDER BY sum(
               ln(1 + (c.n - t.df + 0.5) / (t.df + 0.5)) * t.tf * (%(k1)s + 1)
               / (t.tf + %(k1)s * (1 - %(b)s + %(b)s * t.doc_len / c.avg_len))) DESC, t.id
           ) AS rank
    FROM kept t, corpus c
    WHERE (%(since)s::timestamptz IS NULL AND %(until)s::timestamptz IS NULL)
       OR EXISTS (SELECT 1 FROM messages m
                  WHERE m.tenant = %(tenant)s AND m.session = %(session)s AND m.id = t.id
                    AND (%(since)s::timestamptz IS NULL OR m.created_at >= %(since)s)
                    AND (%(until)s::timestamptz IS NULL OR m.created_at < %(until)s))
    GROUP BY t.id ORDER BY rank LIMIT %(k)s
)
"""

_LEXICAL = "WITH " + _LEXICAL_CTES + "SELECT id, rank FROM lex ORDER BY rank"

_SEARCH = "WITH " + _LEXICAL_CTES + """, vec AS (
    SELECT id, row_number() OVER (ORDER BY embedding <=> %(q)s) AS rank
    FROM (SELECT id, embedding FROM messages
          WHERE tenant = %(tenant)s AND session = %(session)s AND embedding IS NOT NULL
            AND (%(since)s::timestamptz IS NULL OR created_at >= %(since)s)
            AND (%(until)s::timestamptz IS NULL OR created_at < %(until)s)
          ORDER BY embedding <=> %(q)s LIMIT %(k)s) hits
), fused AS (
    SELECT id, sum(1.0 / (%(rrf)s + rank)) AS score
    FROM (SELECT * FROM vec UNION ALL SELECT * FROM lex) ranked GROUP BY id
)
SELECT m.*, fused.score FROM fused
JOIN messages m ON m.tenant = %(tenant)s AND m.session = %(session)s AND m.id = fused.id
ORDER BY fused.score DESC, m.seq LIMIT %(k)s
"""


def _lexical_params(tenant: str, session: str, text: str, k: int, since: datetime | None,
                    until: datetime | None) -> dict[str, Any]:
    return {"tenant": tenant, "session": session, "text": text, "k": k, "k1": BM25_K1,
            "b": BM25_B, "cap": LEXEME_POSTINGS_CAP, "since": since, "until": until}


class Store(SessionStore):
    def __init__(self, pool: AsyncConnectionPool[AsyncConnection[DictRow]],
                 ef_search: int = 200) -> None:
        self.pool = pool
        self.ef_search = ef_search

    @asynccontextmanager
    async def scoped(self, tenant: str, snapshot: bool = False
                     ) -> AsyncIterator[AsyncConnection[DictRow]]:
        """A transaction bound to one tenant, under row-level security; with `snapshot`, a
        read-only repeatable-read transaction, so every read sees one moment."""
        async with self.pool.connection() as conn, conn.transaction():
            if snapshot:
                await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            await conn.execute("SET LOCAL ROLE longthread_app")
            await conn.execute("SELECT set_config('app.tenant', %s, true)", (tenant,))
            await conn.execute("SELECT set_config('hnsw.ef_search', %s, true)",
                               (str(self.ef_search),))
            await conn.execute("SET LOCAL hnsw.iterative_scan = relaxed_order")
            yield conn

    async def get_messages(self, tenant: str, session: str, ids: Sequence[str]) -> list[Message]:
        """Originals by id, in the order asked for."""
        async with self.scoped(tenant) as conn:
            cur = await conn.execute(
                "SELECT * FROM messages WHERE tenant = %s AND session = %s AND id = ANY(%s)",
                (tenant, session, list(ids)))
            found = {row["id"]: row_to_message(row) for row in await cur.fetchall()}
        return [found[i] for i in ids if i in found]

    async def get_with_seq(self, tenant: str, session: str, ids: Sequence[str]
                           ) -> list[tuple[int, Message]]:
        """Originals by id with their seq, in seq order."""
        async with self.scoped(tenant) as conn:
            cur = await conn.execute(
                "SELECT * FROM messages WHERE tenant = %s AND session = %s AND id = ANY(%s)"
                " ORDER BY seq", (tenant, session, list(ids)))
            return [(int(row["seq"]), row_to_message(row)) for row in await cur.fetchall()]

    async def all_messages(self, tenant: str, session: str) -> list[Message]:
        async with self.scoped(tenant) as conn:
            cur = await conn.execute(
                "SELECT * FROM messages WHERE tenant = %s AND session = %s ORDER BY seq",
                (tenant, session))
            return [row_to_message(row) for row in await cur.fetchall()]

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
        """Hybrid retrieval: HNSW cosine + BM25 full text, fused by reciprocal rank."""
        async with self.scoped(tenant) as conn:
            params = _lexical_params(tenant, session, text, k, since, until)
            params.update(rrf=RRF_K, q=Vector(np.asarray(embedding, dtype=np.float32)))
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
        return [ScoredMessage(message=row_to_message(row), score=score, session=session,
                              seq=row["seq"]) for row, score in hits]

    async def lexical(self, tenant: str, session: str, text: str, k: int = 10, *,
                      since: datetime | None = None, until: datetime | None = None,
                      ) -> list[str]:
        """The BM25 leg alone, best first: ids only (for tests, benchmarks and debugging)."""
        async with self.scoped(tenant) as conn:
            cur = await conn.execute(
                _LEXICAL, _lexical_params(tenant, session, text, k, since, until),
                prepare=False)
            return [row["id"] for row in await cur.fetchall()]

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

    async def ledger(self, tenant: str, session: str) -> list[CompactionRecord]:
        async with self.scoped(tenant) as conn:
            cur = await conn.execute(
                "SELECT record FROM ledger WHERE tenant = %s AND session = %s ORDER BY seq",
                (tenant, session))
            return [CompactionRecord.model_validate(r["record"]) for r in await cur.fetchall()]

    async def record_served(self, tenant: str, session: str, served: ServedContext
                            ) -> ServedContext:
        """Store what one context() call served; its seq comes from a sequence, so recording
        never waits on the session's row (appends lock it)."""
        async with self.scoped(tenant) as conn:
            cur = await conn.execute("SELECT nextval('served_contexts_seq') AS seq")
            row = await cur.fetchone()
            assert row is not None
            served = served.model_copy(update={"seq": int(row["seq"])})
            await conn.execute(
                "INSERT INTO served_contexts (tenant, session, seq, turn, record)"
                " VALUES (%s, %s, %s, %s, %s)",
                (tenant, session, served.seq, served.turn, Jsonb(served.model_dump(mode="json"))))
        return served

    async def served(self, tenant: str, session: str, at_turn: int | None = None
                     ) -> list[dict[str, Any]]:
        """Served-context records, oldest first; with `at_turn`, those served up to that turn."""
        async with self.scoped(tenant) as conn:
            cur = await conn.execute(
                "SELECT record FROM served_contexts WHERE tenant = %s AND session = %s"
                " AND (%s::int IS NULL OR turn <= %s) ORDER BY seq",
                (tenant, session, at_turn, at_turn))
            return [row["record"] for row in await cur.fetchall()]

    async def sessions(self, tenant: str) -> list[SessionInfo]:
        async with self.scoped(tenant) as conn:
            cur = await conn.execute(
                "SELECT session, count(*) AS messages, min(created_at) AS first_at,"
                " max(created_at) AS last_at FROM messages WHERE tenant = %s"
                " GROUP BY session ORDER BY session", (tenant,))
            return [SessionInfo.model_validate(row) for row in await cur.fetchall()]
