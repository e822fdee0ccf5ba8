"""Earlier context() code, for old-vs-new runs in one process (only bench/latency.py uses it).

- `previous_serve_context`: as served before commit a75e913 (HEAD 2db6074): the window read
  while the query is embedded, then one search statement (both legs, fusion, fetch and
  neighbours), each neighbour scored by a scan over every hit, then assembly and the served
  record, each on its own pooled connection. Built from today's SQL pieces
  (`memory.store.search`), which are the single statement's parts (tests/store/
  test_search_split.py checks that both forms return the same rows), with the BM25 CTEs as
  they were (`idf` not materialized).
- `session_start()`: while it is entered, today's `serve_context` runs with the three pieces
  the 2026-11-23 03:00 latency work replaced, as they were at 3fe83f3: the BM25 statement
  whose per-lexeme idf Postgres inlined into the per-posting sum (numeric ln per posting),
  rows built with `model_construct`, and the near-duplicate pass that sorted by (df, term)
  per text with one index for all speakers. Patched module attributes, restored on exit:
  only for a bench that runs one call at a time.
"""

from __future__ import annotations

import asyncio
import math
from collections import defaultdict
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, ExitStack, contextmanager
from typing import Any
from unittest import mock

import numpy as np
from pgvector import Vector

import memory.retrieval
import memory.store.store
import memory.store.windows
from activities.serving import (
    QueryEmbedder,
    _embed,
    _participants,
    _remember,
    assemble_and_record,
)
from activities.types import ContextRequest
from memory.lexical import stem_terms
from memory.models import ContextWindow, Message, ScoredMessage, ToolCall
from memory.retrieval import candidate_count, content_query
from memory.store.search import FUSED_AROUND, LEXICAL_CTES, RRF_K, VECTOR_AND_FUSED, lexical_params
from memory.store.store import Store

__all__ = ["previous_search", "previous_serve_context", "session_start"]

_MATERIALIZED = "idf AS MATERIALIZED ("
assert _MATERIALIZED in LEXICAL_CTES, "memory.store.search changed: update the baseline"
_OLD_CTES = LEXICAL_CTES.replace(_MATERIALIZED, "idf AS (")
_OLD_LEXICAL = "WITH " + _OLD_CTES + "SELECT id, rank FROM lex ORDER BY rank"
_ONE = "WITH " + _OLD_CTES + ", " + VECTOR_AND_FUSED
_ONE_AROUND = FUSED_AROUND.replace(
    FUSED_AROUND[FUSED_AROUND.index("WITH lex AS") : FUSED_AROUND.index("), near AS")], _ONE)


async def previous_search(store: Store, tenant: str, session: str, text: str,
                          embedding: Sequence[float], k: int, neighbours: int
                          ) -> list[ScoredMessage]:
    params = lexical_params(tenant, session, text, k, None, None)
    params.update(rrf=RRF_K, q=Vector(np.asarray(embedding, dtype=np.float32)),
                  around=neighbours, near_hits=None)
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
    return [ScoredMessage.model_construct(message=_old_row_to_message(row), score=score,
                                          session=session, seq=row["seq"])
            for row, score in hits]


def _old_row_to_message(row: dict[str, Any]) -> Message:
    """3fe83f3's memory.store.rows.row_to_message."""
    return Message.model_construct(
        id=row["id"], role=row["role"], content=row["content"], created_at=row["created_at"],
        name=row["name"], tool_call_id=row["tool_call_id"],
        tool_calls=tuple(ToolCall.model_construct(**c) for c in row["tool_calls"] or ()),
        metadata=row["metadata"] if row["metadata"] is not None else {},
    )


def _old_near_duplicates(texts: Sequence[str], threshold: float = 0.9,
                         groups: Sequence[str] | None = None) -> dict[int, int]:
    """3fe83f3's memory.similarity.near_duplicates, verbatim but for the docstring."""
    sets = [frozenset(stem_terms(t)) for t in texts]
    df: dict[str, int] = defaultdict(int)
    for terms in sets:
        for term in terms:
            df[term] += 1
    index: dict[str, list[int]] = defaultdict(list)
    duplicates: dict[int, int] = {}
    for i, terms in enumerate(sets):
        if len(terms) < 3:
            continue
        prefix = sorted(terms, key=lambda term: (df[term], term))[
            : len(terms) - math.ceil(threshold * len(terms) - 1e-9) + 1]
        seen: set[int] = set()
        for j in sorted({j for term in prefix for j in index[term]}):
            if j in seen:
                continue
            seen.add(j)
            shared = len(terms & sets[j])
            if shared / (len(terms) + len(sets[j]) - shared) >= threshold and (
                    groups is None or groups[i] == groups[j]):
                duplicates[i] = j
                break
        else:
            for term in prefix:
                index[term].append(i)
    return duplicates


@contextmanager
def swapped(patches: Sequence[tuple[Any, str, Any]]) -> Iterator[None]:
    """Each (module, name, value) set for the duration, and put back on exit. Only for a
    bench that runs one call at a time."""
    with ExitStack() as stack:
        for module, name, value in patches:
            stack.enter_context(mock.patch.object(module, name, value))
        yield


def session_start() -> AbstractContextManager[None]:
    """Today's serving code with 3fe83f3's BM25 statement, row building and near-duplicate
    pass (see the module's docstring); everything is put back on exit."""
    return swapped([
        (memory.store.store, "LEXICAL", _OLD_LEXICAL),
        (memory.store.store, "row_to_message", _old_row_to_message),
        (memory.store.windows, "row_to_message", _old_row_to_message),
        (memory.retrieval, "near_duplicates", _old_near_duplicates)])


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
    # Assembly, then the record on a pooled connection of its own, as the old code did.
    return await assemble_and_record(store, tenant, session, snapshot, request, query,
                                     candidates)
