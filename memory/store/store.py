"""The archive, the ledger and checkpoints in Postgres: every call is scoped by tenant.

Each operation runs in a transaction as the `longthread_app` role with `app.tenant` set, so
row-level security (FORCE'd) filters by tenant even if a query forgot to. Writes are
idempotent: a retried batch inserts nothing twice.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

import numpy as np
from pgvector import Vector
from psycopg import AsyncConnection, AsyncPipeline, AsyncTransaction
from psycopg.rows import DictRow
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool
from pydantic import BaseModel, ConfigDict

from memory.audit import ServedContext
from memory.models import CompactionRecord, Message, ScoredMessage
from memory.store.rows import MESSAGE_COLUMNS, message_columns, row_to_message
from memory.store.sessions import SessionStore

__all__ = ["RRF_K", "SessionInfo", "Store", "neighbour_scores"]

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
    -- key (usable under row-level security). A lexeme with `cap` postings or more is too
    -- common to rank by, like a stop word (BM25 gives it little weight anyway): its document
    -- frequency is counted (up to `cap`, from the index alone) before any posting is read, so
    -- a big session's common words cost a bounded count and no sort.
    SELECT l.lexeme, p.id, p.tf, p.doc_len, d.df
    FROM unnest(tsvector_to_array(to_tsvector('english', %(text)s))) AS l(lexeme),
    LATERAL (SELECT count(*) AS df FROM (
                 SELECT 1 FROM message_terms
                 WHERE tenant = %(tenant)s AND session = %(session)s AND lexeme = l.lexeme
                 LIMIT %(cap)s) c) AS d,
    LATERAL (SELECT id, tf, doc_len FROM message_terms
             WHERE tenant = %(tenant)s AND session = %(session)s AND lexeme = l.lexeme
               AND d.df < %(cap)s) AS p
), kept AS (
    SELECT * FROM postings
), corpus AS (
    SELECT greatest((SELECT coalesce(max(seq), 0) + 1 FROM messages
                     WHERE tenant = %(tenant)s AND session = %(session)s),
                    (SELECT max(df) FROM kept)) AS n,
           coalesce((SELECT avg(doc_len) FROM kept), 1)::float8 AS avg_len
), idf AS (
    -- Each kept lexeme's inverse document frequency, computed once per lexeme, not per posting
    -- (numeric ln costs ~10 µs: per posting it was most of a big session's search).
    SELECT k.lexeme, ln(1 + (c.n - k.df + 0.5) / (k.df + 0.5))::float8 AS w
    FROM (SELECT DISTINCT lexeme, df FROM kept) k, corpus c
), lex AS (
    -- Okapi BM25 over the kept postings.
    SELECT t.id, row_number() OVER (ORDER BY sum(
               i.w * t.tf * (%(k1)s + 1)
               / (t.tf + %(k1)s * (1 - %(b)s + %(b)s * t.doc_len / c.avg_len))) DESC, t.id
           ) AS rank
    FROM kept t JOIN idf i ON i.lexeme = t.lexeme, corpus c
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
    -- the k best (and any tied with the k-th): only those are fetched from messages
    ORDER BY score DESC FETCH FIRST %(k)s ROWS WITH TIES
)
SELECT """ + message_columns("m") + """, fused.score FROM fused
JOIN messages m ON m.tenant = %(tenant)s AND m.session = %(session)s AND m.id = fused.id
ORDER BY fused.score DESC, m.seq LIMIT %(k)s
"""


_SCOPE = ("SELECT set_config('role', 'longthread_app', true), set_config('app.tenant', %s, true),"
          " set_config('hnsw.ef_search', %s, true),"
          " set_config('hnsw.iterative_scan', 'relaxed_order', true)")

_SELECT_MESSAGES = f"SELECT {MESSAGE_COLUMNS} FROM messages"


# The neighbours of the hits (the turns `around` seqs either side) ride in the same statement,
# marked `extra`; the caller scores each at half its nearest hit's score.
_SEARCH_AROUND = "WITH hits AS (" + _SEARCH + """), near AS (
    SELECT DISTINCT h.seq + d AS seq FROM hits h,
           generate_series(-%(around)s::int, %(around)s::int) AS d WHERE d <> 0
)
SELECT * FROM (
    SELECT *, false AS extra FROM hits
    UNION ALL
    SELECT """ + message_columns("m") + """, NULL, true FROM near
    JOIN messages m ON m.tenant = %(tenant)s AND m.session = %(session)s AND m.seq = near.seq
    WHERE m.id NOT IN (SELECT id FROM hits)
) found ORDER BY extra, score DESC, seq
"""

_RECORD_SERVED = """
WITH next AS (SELECT nextval('served_contexts_seq') AS seq)
INSERT INTO served_contexts (tenant, session, seq, turn, record)
SELECT %s, %s, next.seq, %s, jsonb_set(%s::jsonb, '{seq}', to_jsonb(next.seq)) FROM next
RETURNING seq
"""


def _lexical_params(tenant: str, session: str, text: str, k: int, since: datetime | None,
                    until: datetime | None) -> dict[str, Any]:
    return {"tenant": tenant, "session": session, "text": text, "k": k, "k1": BM25_K1,
            "b": BM25_B, "cap": LEXEME_POSTINGS_CAP, "since": since, "until": until}


def neighbour_scores(hits: Sequence[tuple[int, float]], extras: Sequence[int],
                     around: int) -> list[float]:
    """Each neighbour's score: half that of the hit nearest to it by seq; of two equally near,
    the one listed first (`hits` is best first). Looked up at seq ± d for d = 1..`around`
    (every neighbour is that close to a hit) instead of a scan of all hits per neighbour,
    which took most of a 200-hit search's client time."""
    by_seq: dict[int, tuple[int, float]] = {}
    for position, (seq, score) in enumerate(hits):
        by_seq.setdefault(seq, (position, score))
    out = []
    for seq in extras:
        near = None
        for d in range(max(around, 0) + 1):
            found = [by_seq[s] for s in {seq - d, seq + d} if s in by_seq]
            if found:
                near = min(found)
                break
        if near is None:  # not within `around` of any hit: the nearest, as a scan finds it
            near = min(by_seq.values(), key=lambda ps: (abs(hits[ps[0]][0] - seq), ps[0]))
        out.append(near[1] * 0.5)
    return out


class Store(SessionStore):
    def __init__(self, pool: AsyncConnectionPool[AsyncConnection[DictRow]],
                 ef_search: int = 200) -> None:
        self.pool = pool
        self.ef_search = ef_search
        self._summary_cache = OrderedDict()

    @asynccontextmanager
    async def scoped(self, tenant: str, snapshot: bool = False
                     ) -> AsyncIterator[AsyncConnection[DictRow]]:
        """A transaction bound to one tenant, under row-level security; with `snapshot`, a
        read-only repeatable-read transaction, so every read sees one moment.

        BEGIN and the scope go to the server in one round trip (a pipeline), not five."""
        async with self.pool.connection() as conn:
            # An AsyncTransaction, not conn.transaction(): that one would keep the connection in
            # pipeline mode (a nested pipeline) for the whole transaction.
            tx, began = AsyncTransaction(conn), False
            try:
                async with conn.pipeline():
                    await tx.__aenter__()
                    began = True
                    await self._scope(conn, tenant, snapshot)
            except BaseException as exc:
                if began:
                    await tx.__aexit__(type(exc), exc, exc.__traceback__)
                raise
            try:
                yield conn
            except BaseException as exc:
                if not await tx.__aexit__(type(exc), exc, exc.__traceback__):
                    raise
            else:
                await tx.__aexit__(None, None, None)

    async def _scope(self, conn: AsyncConnection[DictRow], tenant: str, snapshot: bool) -> None:
        """Queue (in a pipeline) or run the statements that scope a new transaction: its
        isolation, the app role, the tenant and the HNSW settings, in one statement."""
        if snapshot:
            await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        await conn.execute(_SCOPE, (tenant, str(self.ef_search)))

    @asynccontextmanager
    async def pipelined(self, tenant: str
                        ) -> AsyncIterator[tuple[AsyncConnection[DictRow], AsyncPipeline]]:
        """A scoped transaction in pipeline mode: statements are queued, and go to the server
        with the next `pipeline.sync()`, a fetch, or at the end together with COMMIT."""
        async with self.pool.connection() as conn:
            async with conn.pipeline() as pipeline, AsyncTransaction(conn):
                await self._scope(conn, tenant, False)
                yield conn, pipeline

    async def _batch(self, tenant: str, queries: Sequence[tuple[str, Any]], *,
                     snapshot: bool = False, prepare: bool | None = None
                     ) -> list[list[dict[str, Any]]]:
        """Run `queries` in one scoped transaction and one round trip (BEGIN, scope, the
        queries and COMMIT pipelined); their rows, in order. `prepare=False` plans each call
        for its own values (the search's plan depends on the query's words)."""
        async with self.pool.connection() as conn:
            async with conn.pipeline(), AsyncTransaction(conn):
                await self._scope(conn, tenant, snapshot)
                cursors = [await conn.execute(q, params, prepare=prepare)
                           for q, params in queries]
            return [await cur.fetchall() if cur.description else [] for cur in cursors]

    async def get_messages(self, tenant: str, session: str, ids: Sequence[str]) -> list[Message]:
        """Originals by id, in the order asked for."""
        async with self.scoped(tenant) as conn:
            cur = await conn.execute(
                f"{_SELECT_MESSAGES} WHERE tenant = %s AND session = %s AND id = ANY(%s)",
                (tenant, session, list(ids)))
            found = {row["id"]: row_to_message(row) for row in await cur.fetchall()}
        return [found[i] for i in ids if i in found]

    async def get_with_seq(self, tenant: str, session: str, ids: Sequence[str]
                           ) -> list[tuple[int, Message]]:
        """Originals by id with their seq, in seq order."""
        async with self.scoped(tenant) as conn:
            cur = await conn.execute(
                f"{_SELECT_MESSAGES} WHERE tenant = %s AND session = %s AND id = ANY(%s)"
                " ORDER BY seq", (tenant, session, list(ids)))
            return [(int(row["seq"]), row_to_message(row)) for row in await cur.fetchall()]

    async def all_messages(self, tenant: str, session: str) -> list[Message]:
        async with self.scoped(tenant) as conn:
            cur = await conn.execute(
                f"{_SELECT_MESSAGES} WHERE tenant = %s AND session = %s ORDER BY seq",
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
        """Hybrid retrieval: HNSW cosine + BM25 full text, fused by reciprocal rank; with
        `neighbours`, the turns around each hit too, at half its score. One round trip."""
        params = _lexical_params(tenant, session, text, k, since, until)
        params.update(rrf=RRF_K, q=Vector(np.asarray(embedding, dtype=np.float32)),
                      around=neighbours)
        (rows,) = await self._batch(tenant, [(_SEARCH if not neighbours else _SEARCH_AROUND,
                                              params)], prepare=False)
        hits = [(row, float(row["score"])) for row in rows if not row.get("extra")]
        if neighbours and hits:
            extras = [row for row in rows if row.get("extra")]
            scores = neighbour_scores([(int(row["seq"]), score) for row, score in hits],
                                      [int(row["seq"]) for row in extras], neighbours)
            hits.extend(zip(extras, scores, strict=True))
        return [ScoredMessage.model_construct(message=row_to_message(row), score=score,
                                              session=session, seq=row["seq"])
                for row, score in hits]

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
        """Store what one context() call served, in one statement and one round trip; its seq
        comes from a sequence, so recording never waits on the session's row (appends lock
        it)."""
        (rows,) = await self._batch(tenant, [(_RECORD_SERVED, (
            tenant, session, served.turn, Jsonb(served.model_dump(mode="json"))))])
        return served.model_copy(update={"seq": int(rows[0]["seq"])})

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
