"""The archive, the ledger and checkpoints in Postgres: every call is scoped by tenant.

Each operation runs in a transaction as the `longthread_app` role with `app.tenant` set, so
row-level security (FORCE'd) filters by tenant even if a query forgot to. Writes are
idempotent: a retried batch inserts nothing twice.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import AsyncIterator, Collection, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import numpy as np
from pgvector import Vector
from psycopg import AsyncConnection, AsyncPipeline, AsyncTransaction
from psycopg.rows import DictRow
from psycopg_pool import AsyncConnectionPool

from memory.errors import InvalidInputError, NotFoundError
from memory.messages import ARCHIVE
from memory.models import CompactionRecord, Message, ScoredMessage
from memory.store.db import checkout
from memory.store.indexing import INDEX_TERMS, INDEX_TERMS_BYTES, INDEX_TERMS_LIMIT
from memory.store.listing import SessionInfo, SessionListing
from memory.store.lookups import Lookup, MessageLookups
from memory.store.rows import MESSAGE_COLUMNS, row_to_message, row_to_scored
from memory.store.search import (
    FUSED,
    FUSED_AROUND,
    LEXICAL,
    RRF_K,
    lexical_params,
    neighbour_scores,
)
from memory.store.served import ServedContexts
from memory.store.sessions import SessionStore
from memory.store.tenant_search import TenantSearch

__all__ = ["RRF_K", "Connection", "Lookup", "SessionInfo", "Store"]

Connection = AsyncConnection[DictRow]


# JIT off: these are short statements, and one whose estimated cost crosses jit_above_cost
# (an HNSW scan over a big table can, when the statistics are off) would spend longer
# compiling than running.
_SCOPE = ("SELECT set_config('role', 'longthread_app', true), set_config('app.tenant', %s, true),"
          " set_config('hnsw.ef_search', %s, true),"
          " set_config('hnsw.iterative_scan', 'relaxed_order', true),"
          " set_config('jit', 'off', true)")

_SELECT_MESSAGES = f"SELECT {MESSAGE_COLUMNS} FROM messages"


class Store(SessionStore, MessageLookups, TenantSearch, ServedContexts, SessionListing):
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
        async with checkout(self.pool) as conn:
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
        async with checkout(self.pool) as conn:
            async with conn.pipeline() as pipeline, AsyncTransaction(conn):
                await self._scope(conn, tenant, False)
                yield conn, pipeline

    async def _batch(self, tenant: str, queries: Sequence[tuple[str, Any]], *,
                     snapshot: bool = False, prepare: bool | None = None,
                     conn: Connection | None = None) -> list[list[dict[str, Any]]]:
        """Run `queries` in one scoped transaction and one round trip (BEGIN, scope, the
        queries and COMMIT pipelined); their rows, in order. `prepare=False` plans each call
        for its own values (the search's plan depends on the query's words). On `conn` (one
        the caller holds, idle) if given, else on a connection from the pool."""
        if conn is None:
            async with checkout(self.pool) as own:
                return await self._batch(tenant, queries, snapshot=snapshot, prepare=prepare,
                                         conn=own)
        async with conn.pipeline(), AsyncTransaction(conn):
            await self._scope(conn, tenant, snapshot)
            cursors = [await conn.execute(q, params, prepare=prepare) for q, params in queries]
        return [await cur.fetchall() if cur.description else [] for cur in cursors]

    async def get_messages(self, tenant: str, session: str, ids: Sequence[str], *,
                           conn: Connection | None = None) -> list[Message]:
        """Originals by id, in the order asked for; on `conn` (idle) if given."""
        (rows,) = await self._batch(tenant, [(
            f"{_SELECT_MESSAGES} WHERE tenant = %s AND session = %s AND id = ANY(%s)",
            (tenant, session, list(ids)))], conn=conn)
        found = {row["id"]: row_to_message(row) for row in rows}
        return [found[i] for i in ids if i in found]

    async def get_with_seq(self, tenant: str, session: str, ids: Sequence[str]
                           ) -> list[tuple[int, Message]]:
        """Originals by id with their seq, in seq order."""
        async with self.scoped(tenant) as conn:
            cur = await conn.execute(
                f"{_SELECT_MESSAGES} WHERE tenant = %s AND session = %s AND id = ANY(%s)"
                " ORDER BY seq", (tenant, session, list(ids)))
            return [(int(row["seq"]), row_to_message(row)) for row in await cur.fetchall()]

    async def all_with_seq(self, tenant: str, session: str) -> list[tuple[int, Message]]:
        """Every message with its seq, in append order (`verify` rebuilds from these)."""
        async with self.scoped(tenant) as conn:
            cur = await conn.execute(f"{_SELECT_MESSAGES} WHERE tenant = %s AND session = %s"
                                     " ORDER BY seq", (tenant, session))
            return [(int(row["seq"]), row_to_message(row)) for row in await cur.fetchall()]

    async def message_at(self, tenant: str, session: str, seq: int) -> Message | None:
        """The message stored at `seq` (0-based), if any."""
        (rows,) = await self._batch(tenant, [(
            f"{_SELECT_MESSAGES} WHERE tenant = %s AND session = %s AND seq = %s",
            (tenant, session, seq))])
        return row_to_message(rows[0]) if rows else None

    async def all_messages(self, tenant: str, session: str, before: int | None = None
                           ) -> list[Message]:
        """Every message in append order; with `before`, the first `before` of them."""
        async with self.scoped(tenant) as conn:
            cur = await conn.execute(
                f"{_SELECT_MESSAGES} WHERE tenant = %s AND session = %s"
                " AND (%s::bigint IS NULL OR seq < %s) ORDER BY seq",
                (tenant, session, before, before))
            return [row_to_message(row) for row in await cur.fetchall()]

    async def digests(self, tenant: str, session: str) -> list[tuple[int, str, str | None]]:
        """Every message's seq, id and the digest stored when it was appended (None before
        migration 6), in append order."""
        async with self.scoped(tenant) as conn:
            cur = await conn.execute(
                "SELECT seq, id, digest FROM messages WHERE tenant = %s AND session = %s"
                " ORDER BY seq", (tenant, session))
            return [(int(row["seq"]), row["id"], row["digest"]) for row in await cur.fetchall()]

    async def count(self, tenant: str, session: str) -> int:
        async with self.scoped(tenant) as conn:
            cur = await conn.execute(
                "SELECT count(*) AS n FROM messages WHERE tenant = %s AND session = %s",
                (tenant, session))
            row = await cur.fetchone()
        return int(row["n"]) if row else 0

    async def missing(self, tenant: str, session: str) -> NotFoundError:
        """The error for a session with nothing to read. An erased one says so, and when: its
        tombstone is all that is kept, and "no session" read as a mistyped id to an auditor
        who knew it had existed."""
        async with self.scoped(tenant) as conn:
            cur = await conn.execute("SELECT erased_at FROM sessions WHERE tenant = %s"
                                     " AND session = %s", (tenant, session))
            row = await cur.fetchone()
        if row is not None and row["erased_at"] is not None:
            return NotFoundError(
                f"session: {session!r} of tenant {tenant!r} was erased on "
                f"{row['erased_at'].astimezone(UTC):%Y-%m-%d %H:%M} UTC (`longthread db "
                "erase`); nothing of it is kept but that mark")
        return NotFoundError(f"session: no session {session!r} for tenant {tenant!r}")

    def connection(self) -> AbstractAsyncContextManager[Connection]:
        """A connection from the pool, for a caller that runs several of this store's calls
        one after the other (`conn=`): it is checked out, and checked, once."""
        return checkout(self.pool)

    async def search(
        self, tenant: str, session: str, text: str, embedding: Sequence[float], k: int = 10,
        *, neighbours: int = 0, neighbour_hits: int | None = None,
        since: datetime | None = None, until: datetime | None = None,
    ) -> list[ScoredMessage]:
        """Hybrid retrieval: HNSW cosine + BM25 full text, fused by reciprocal rank; with
        `neighbours`, the turns around each hit (or each of the best `neighbour_hits`) too, at
        half its score. Two statements on one connection: `lexical_ranks`, then `fused`."""
        async with self.connection() as conn:
            ranks = await self.lexical_ranks(tenant, session, text, k, since=since,
                                             until=until, conn=conn)
            return await self.fused(tenant, session, ranks, embedding, k,
                                    neighbours=neighbours, neighbour_hits=neighbour_hits,
                                    since=since, until=until, conn=conn)

    async def lexical_ranks(self, tenant: str, session: str, text: str, k: int = 10, *,
                            since: datetime | None = None, until: datetime | None = None,
                            conn: Connection | None = None) -> list[tuple[str, int]]:
        """The BM25 leg: the k best ids with their ranks (1 = best). Planned for each call:
        its plan depends on the query's words."""
        (rows,) = await self._batch(
            tenant, [(LEXICAL, lexical_params(tenant, session, text, k, since, until))],
            prepare=False, conn=conn)
        return [(row["id"], int(row["rank"])) for row in rows]

    async def fused(
        self, tenant: str, session: str, lexical: Sequence[tuple[str, int]],
        embedding: Sequence[float], k: int = 10, *, neighbours: int = 0,
        neighbour_hits: int | None = None, since: datetime | None = None,
        until: datetime | None = None, conn: Connection | None = None,
    ) -> list[ScoredMessage]:
        """The vector leg fused with `lexical` (from `lexical_ranks` with the same k, since
        and until) by reciprocal rank: the k best messages, and with `neighbours` the turns
        around each (or each of the best `neighbour_hits`, None for all) at half the score of
        the hit nearest to it. One round trip."""
        if neighbour_hits is not None and neighbour_hits < 0:
            raise InvalidInputError("neighbour_hits", f"must be 0 or more, not {neighbour_hits}")
        params: dict[str, Any] = {
            "tenant": tenant, "session": session, "k": k, "since": since, "until": until,
            "rrf": RRF_K, "q": Vector(np.asarray(embedding, dtype=np.float32)),
            "around": neighbours, "near_hits": neighbour_hits, "lex_ids": [i for i, _ in lexical],
            "lex_ranks": [r for _, r in lexical]}
        (rows,) = await self._batch(tenant, [(FUSED_AROUND if neighbours else FUSED, params)],
                                    prepare=False, conn=conn)
        hits = [(row, float(row["score"])) for row in rows if not row.get("extra")]
        if neighbours and hits:
            extras = [row for row in rows if row.get("extra")]
            scores = neighbour_scores([(int(row["seq"]), score) for row, score in hits],
                                      [int(row["seq"]) for row in extras], neighbours)
            hits.extend(zip(extras, scores, strict=True))
        return [row_to_scored(row, score, session) for row, score in hits]

    async def lexical(self, tenant: str, session: str, text: str, k: int = 10, *,
                      since: datetime | None = None, until: datetime | None = None,
                      ) -> list[str]:
        """The BM25 leg alone, best first: ids only (for tests, benchmarks and debugging)."""
        return [i for i, _ in await self.lexical_ranks(tenant, session, text, k, since=since,
                                                        until=until)]

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

    async def index_terms(self, tenant: str, session: str, rounds: int | None = None) -> int:
        """Bring the session's inverted index up to date (`memory.store.indexing`), or as far
        as `rounds` statements take it (each commits on its own); how many messages it
        indexed. Idempotent, and safe beside a concurrent call."""
        total = 0
        while rounds is None or rounds > 0:
            done, more = await self.index_terms_once(tenant, session)
            total += done
            if not more:
                break
            rounds = None if rounds is None else rounds - 1
        return total

    async def index_terms_once(self, tenant: str, session: str) -> tuple[int, bool]:
        """One statement: at most INDEX_TERMS_LIMIT messages, stopping after the one whose
        text vector crosses INDEX_TERMS_BYTES; how many it indexed, whether more may wait."""
        (rows,) = await self._batch(tenant, [(INDEX_TERMS, {
            "tenant": tenant, "session": session, "limit": INDEX_TERMS_LIMIT,
            "bytes": INDEX_TERMS_BYTES})])
        return int(rows[0]["n"]), bool(rows[0]["more"])

    async def ledger(self, tenant: str, session: str, *, start: int = 0, stop: int | None = None,
                     ids: Collection[str] | None = None) -> list[CompactionRecord]:
        """The records with `start <= seq < stop` (and, given `ids`, only those), in order.
        Callers that need a few records ask for those: a million-message session's ledger
        is tens of megabytes, and reading it whole cost every compact() seconds."""
        # One statement text for each shape, not `%s IS NULL OR ...`: statements are prepared
        # on the server, and a generic plan for that would not use the (session, id) index.
        query = "SELECT record FROM ledger WHERE tenant = %s AND session = %s AND seq >= %s"
        args: list[object] = [tenant, session, start]
        if stop is not None:
            query += " AND seq < %s"
            args.append(stop)
        if ids is not None:
            query += " AND id = ANY(%s)"
            args.append(list(ids))
        async with self.scoped(tenant) as conn:
            cur = await conn.execute(query + " ORDER BY seq", args)
            return [CompactionRecord.model_validate(r["record"], context=ARCHIVE)
                    for r in await cur.fetchall()]
