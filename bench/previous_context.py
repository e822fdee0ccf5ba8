"""context() as it was served before commit a75e913 (HEAD 2db6074), for an old-vs-new run in
one process: the window read while the query is embedded, then one search statement (both
legs, fusion, fetch and neighbours), each neighbour scored by a scan over every hit, then
assembly and the served record, each on its own pooled connection.

Built from today's SQL pieces (`memory.store.search`), which are the single statement's parts
unchanged (tests/store/test_search_split.py checks that both forms return the same rows).
Only bench/latency.py uses it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import numpy as np
from pgvector import Vector

from activities.serving import QueryEmbedder, _embed, _participants, _remember, shares_for
from activities.types import ContextRequest
from memory.assembly import ASSEMBLY_VERSION
from memory.audit import ServedContext, window_digest
from memory.models import ContextWindow, ScoredMessage
from memory.retrieval import candidate_count, content_query
from memory.store.rows import row_to_message
from memory.store.search import FUSED_AROUND, LEXICAL_CTES, RRF_K, VECTOR_AND_FUSED, lexical_params
from memory.store.store import Store
from memory.window import assemble_from_window

__all__ = ["previous_search", "previous_serve_context"]

_ONE = "WITH " + LEXICAL_CTES + ", " + VECTOR_AND_FUSED
_ONE_AROUND = FUSED_AROUND.replace(
    FUSED_AROUND[FUSED_AROUND.index("WITH lex AS") : FUSED_AROUND.index("), near AS")], _ONE)


async def previous_search(store: Store, tenant: str, session: str, text: str,
                          embedding: Sequence[float], k: int, neighbours: int
                          ) -> list[ScoredMessage]:
    params = lexical_params(tenant, session, text, k, None, None)
    params.update(rrf=RRF_K, q=Vector(np.asarray(embedding, dtype=np.float32)),
                  around=neighbours)
    (rows,) = await store._batch(tenant, [(_ONE_AROUND if neighbours else _ONE, params)],
                                 prepare=False)
    hits = [(row, float(row["score"])) for row in rows if not row.get("extra")]
    if neighbours and hits:
        by_seq = {row["seq"]: score for row, score in hits}
        for row in rows:
            if row.get("extra"):
                seq = int(row["seq"])
                near = min(by_seq, key=lambda s: abs(s - seq))
                hits.append((row, by_seq[near] * 0.5))
    return [ScoredMessage.model_construct(message=row_to_message(row), score=score,
                                          session=session, seq=row["seq"])
            for row, score in hits]


async def previous_serve_context(store: Store, embedder: QueryEmbedder, tenant: str,
                                 session: str, request: ContextRequest) -> ContextWindow:
    """2db6074's serve_context, line for line, with `previous_search` for `store.search`."""
    query = request.query if request.query and request.query.strip() else None
    key = (tenant, session)
    guess = content_query(query, _participants.get(key, ())) if query else None
    embedding = asyncio.ensure_future(_embed(embedder, guess)) if guess else None
    try:
        snapshot = await store.read_window(tenant, session, request.max_tokens)
    except BaseException:
        if embedding is not None:
            embedding.cancel()
        raise
    candidates: list[ScoredMessage] = []
    if query is not None and embedding is not None:
        names = frozenset(m.name for m in snapshot.state.messages if m.name)
        _remember(key, names)
        text = content_query(query, names)
        if text == guess:
            vector = await embedding
        else:
            embedding.cancel()
            vector = await _embed(embedder, text)
        k = max(request.k, candidate_count(request.max_tokens))
        found = await previous_search(store, tenant, session, text, vector, k,
                                      request.neighbours)
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
