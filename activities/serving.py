"""Serving a context: a read of the store, not a workflow round trip.

The client calls this directly (and the `build_context` activity calls it for `generate()`):
one snapshot of the current window version, hybrid retrieval with the query embedded in this
process, pure assembly, and a served-context record so `replay --at N` can rebuild it exactly.
The record is committed before the window is returned: a context the caller has, replay has.

The search text (and what is embedded) is the query without the participants' names
(`memory.retrieval.content_query`); assembly and the served record keep the query as asked.
The participants are the speakers (`Message.name`) of the window read; the query is embedded
and its BM25 leg run while the window is read, with the participants this process saw in the
session last time, and again only if the window shows other names that change the search text.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any, Protocol

from activities.types import ContextRequest
from memory.assembly import ASSEMBLY_VERSION, Shares
from memory.audit import ServedContext, window_digest
from memory.errors import BudgetTooSmallError, InvalidInputError
from memory.models import ContextWindow, ScoredMessage
from memory.retrieval import candidate_count, content_query, neighbour_hit_count
from memory.store.sessions import LoadedWindow
from memory.store.store import Connection, Store
from memory.window import assemble_from_window, whole_bodies

__all__ = ["QueryEmbedder", "assemble_and_record", "serve_context", "shares_for"]

log = logging.getLogger(__name__)

_KNOWN_SESSIONS = 1024  # sessions whose participants a process remembers


class QueryEmbedder(Protocol):
    async def embed(self, texts: list[str]) -> list[list[float]]: ...


# (tenant, session) -> the participants seen in its last window, least recently used first.
_participants: OrderedDict[tuple[str, str], frozenset[str]] = OrderedDict()


def _remember(key: tuple[str, str], names: frozenset[str]) -> None:
    _participants[key] = names
    _participants.move_to_end(key)
    while len(_participants) > _KNOWN_SESSIONS:
        _participants.popitem(last=False)


def shares_for(request: ContextRequest) -> Shares | None:
    """The caller's fixed shares, or None: assembly adapts them to the query and the hits."""
    if request.shares is None:
        return None
    summary, retrieved, recent = request.shares
    return Shares(summary=summary, retrieved=retrieved, recent=recent)


async def _embed(embedder: QueryEmbedder, text: str) -> list[float]:
    (vector,) = await embedder.embed([text])
    return vector


async def _settled(*tasks: asyncio.Future[Any] | None) -> None:
    """Wait for `tasks` to end, whatever their outcome: none is left running on a connection
    that goes back to the pool, and none logs an unretrieved exception."""
    pending = [t for t in tasks if t is not None]
    if pending:
        await asyncio.gather(*pending, return_exceptions=True)


async def serve_context(store: Store, embedder: QueryEmbedder, tenant: str, session: str,
                        request: ContextRequest, *, max_bytes: int | None = None
                        ) -> ContextWindow:
    """Three things start at once: the window's read and the BM25 leg (ids and ranks only: it
    needs no vector), each on its own pooled connection, and the query's embedding (in a
    thread). When the vector is there, one statement runs the vector leg, fuses and fetches
    the hits with their neighbours. Assembly follows, then the served record, committed before
    the window is returned; the fused search and the record share one connection.

    No call holds a pooled connection while it waits for another: with as many concurrent
    calls as the pool has connections, each holding one and waiting for a second, none could
    go on until the pool timed out."""
    query = request.query if request.query and request.query.strip() else None
    key = (tenant, session)
    guess = content_query(query, _participants.get(key, ())) if query else None
    # Enough candidates for the reranker to reorder what fits the budget.
    k = max(request.k, candidate_count(request.max_tokens))
    embedding = asyncio.ensure_future(_embed(embedder, guess)) if guess else None
    lexical = asyncio.ensure_future(
        store.lexical_ranks(tenant, session, guess, k)) if guess else None
    try:
        snapshot = await store.read_window(tenant, session, request.max_tokens)
        ranks: list[tuple[str, int]] | None = None
        vector: list[float] | None = None
        if query is not None and embedding is not None and lexical is not None:
            names = frozenset(m.name for m in snapshot.state.messages if m.name)
            _remember(key, names)
            text = content_query(query, names)
            if text != guess:  # names this process had not seen in the session
                await _settled(embedding, lexical)
                embedding = asyncio.ensure_future(_embed(embedder, text))
                lexical = asyncio.ensure_future(store.lexical_ranks(tenant, session, text, k))
            ranks, vector = await lexical, await embedding
    finally:
        await _settled(embedding, lexical)
    async with store.connection() as conn:
        candidates: list[ScoredMessage] = []
        if ranks is not None and vector is not None:
            found = await store.fused(
                tenant, session, ranks, vector, k, neighbours=request.neighbours,
                neighbour_hits=neighbour_hit_count(k), conn=conn)
            # Only what existed at the snapshot: retrieval ran in its own transactions.
            candidates = [c for c in found if c.seq is not None and c.seq < snapshot.turn]
        window = await assemble_and_record(store, tenant, session, snapshot, request, query,
                                           candidates, conn=conn, max_bytes=max_bytes)
    return window


async def assemble_and_record(store: Store, tenant: str, session: str, snapshot: LoadedWindow,
                              request: ContextRequest, query: str | None,
                              candidates: Sequence[ScoredMessage], *,
                              conn: Connection | None = None,
                              max_bytes: int | None = None) -> ContextWindow:
    """Assembly from the window read and the candidates, then the served record, committed
    before the window is returned (a context the caller has, replay has). The one tail of
    every serving path, the code before a75e913 in bench/previous_context.py included; on
    `conn` if given, else on a pooled connection of its own.

    `max_bytes` bounds the window's JSON: `generate()` hands the window to the chat activity
    through Temporal, which refuses a payload over 2 MB, and an activity whose result it
    refuses is retried for ever. A larger window is assembled again at a proportionally
    smaller budget until it fits, and the budget served is the one recorded, so `replay`
    rebuilds exactly what the model saw."""
    shares = shares_for(request)

    async def assemble(budget: int) -> ContextWindow:
        # Bodies over 64 KB are previews in the window; those that may be shown whole are read
        # as the chooser asks (bodies never change under an id: outside the snapshot is the
        # same), and assembly asks for them again in the same order.
        chooser, bodies = whole_bodies(snapshot.state, budget), {}
        while (wanted := chooser.wanted()) is not None:
            found = await store.get_messages(tenant, session, [wanted], conn=conn)
            bodies[wanted] = found[0] if found else None
            chooser.offer(bodies[wanted])
        return assemble_from_window(
            snapshot.state, max_tokens=budget, retrieved=candidates, shares=shares,
            query=query, bodies={i: b for i, b in bodies.items() if b is not None})

    budget = request.max_tokens
    window = await assemble(budget)
    while max_bytes is not None and budget > 1 \
            and (size := len(window.model_dump_json().encode())) > max_bytes:
        budget = max(1, min(budget - 1, int(budget * max_bytes / size * 0.9)))
        try:
            window = await assemble(budget)
        except BudgetTooSmallError:  # not the caller's budget: the system messages' size
            raise InvalidInputError("messages", f"the system messages alone are over "
                                    f"{max_bytes:,} bytes of window, the most generate() can "
                                    "pass through Temporal (2 MB a payload); call context() "
                                    "and the model yourself") from None
    if budget < request.max_tokens:
        log.warning("%s/%s: a %d-token window is over %d bytes; served within %d tokens",
                    tenant, session, request.max_tokens, max_bytes, budget)
    await store.record_served(tenant, session, ServedContext(
        seq=0, turn=snapshot.turn, query=query, max_tokens=budget,
        tokens=window.tokens, source_ids=tuple(window.source_ids),
        digest=window_digest(window), ledger_seq=snapshot.version,
        retrieved=tuple((c.message.id, c.score) for c in candidates),
        shares=None if shares is None else (shares.summary, shares.retrieved, shares.recent),
        assembly_version=ASSEMBLY_VERSION), conn=conn)
    return window
