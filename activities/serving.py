"""Serving a context: a read of the store, not a workflow round trip.

The client calls this directly (and the `build_context` activity calls it for `generate()`):
one snapshot of the current window version, hybrid retrieval with the query embedded in this
process, pure assembly, and a served-context record so `replay --at N` can rebuild it exactly.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

from activities.types import ContextRequest
from memory.assembly import ASSEMBLY_VERSION, Shares
from memory.audit import ServedContext, window_digest
from memory.models import ContextWindow, ScoredMessage
from memory.retrieval import candidate_count
from memory.store.store import Store
from memory.window import assemble_from_window

__all__ = ["QueryEmbedder", "serve_context", "shares_for"]


class QueryEmbedder(Protocol):
    async def embed(self, texts: list[str]) -> list[list[float]]: ...


def shares_for(request: ContextRequest) -> Shares | None:
    """The caller's fixed shares, or None: assembly adapts them to the query and the hits."""
    if request.shares is None:
        return None
    summary, retrieved, recent = request.shares
    return Shares(summary=summary, retrieved=retrieved, recent=recent)


async def serve_context(store: Store, embedder: QueryEmbedder, tenant: str, session: str,
                        request: ContextRequest) -> ContextWindow:
    query = request.query if request.query and request.query.strip() else None

    async def retrieve() -> list[ScoredMessage]:
        if query is None:
            return []
        (vector,) = await embedder.embed([query])
        # Enough candidates for the reranker to reorder what fits the budget.
        k = max(request.k, candidate_count(request.max_tokens))
        return await store.search(tenant, session, query, vector, k,
                                  neighbours=request.neighbours)

    snapshot, found = await asyncio.gather(
        store.read_window(tenant, session, request.max_tokens), retrieve())
    # Only what existed at the snapshot: retrieval ran in its own transaction.
    candidates = [c for c in found if c.seq is not None and c.seq < snapshot.turn]
    shares = shares_for(request)
    window = assemble_from_window(snapshot.state, max_tokens=request.max_tokens,
                                  retrieved=candidates, shares=shares, query=query)
    await store.record_served(tenant, session, ServedContext(
        seq=0, turn=snapshot.turn, query=query, max_tokens=request.max_tokens,
        tokens=window.tokens, source_ids=tuple(window.source_ids),
        digest=window_digest(window), ledger_seq=snapshot.version,
        retrieved=tuple((c.message.id, c.score) for c in candidates),
        shares=None if shares is None else (shares.summary, shares.retrieved, shares.recent),
        assembly_version=ASSEMBLY_VERSION))
    return window
