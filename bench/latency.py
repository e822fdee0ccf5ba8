"""Latency against a no-op Temporal update measured in the same run, plus throughput.

Issue 11 targets, each sampled interleaved with the no-op update (so both see the same noise):
- `append_many` of 1 message: p50 ≤ 1.3× the no-op update's p50; of 100 messages: ≤ 2×.
  Measured twice: back to back in a live session (embedding and compaction of the earlier
  appends run in the background, as in real use), and "quiet" (the session settled before
  each sample).
- `context()` at 100k messages in the session, query embedding included: p50 ≤ 30 ms,
  p95 ≤ 60 ms. Also at 1k and 10k, with the time split into its parts at the largest scale.

The context sessions are filled straight into the store (`Store.append_messages` +
`Store.set_embeddings`, with noisy copies of real MiniLM vectors of LoCoMo turns) in chunks of
2,000, each followed by a one-message append through the client, so the workflow takes the
store's cursors and compacts as it would after a 2,000-message batch; then the session settles.

Also kept from before: one extractive compact() of ~200 messages, ingestion throughput (2,000
LoCoMo turns through the client until settled, embedding included), and 200 conversations
from 20 concurrent clients.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import math
import os
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Hashable, Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Any

import numpy as np

import activities.serving
import memory.retrieval
import memory.store.store
from activities.providers.embedders import Embedder, OnnxMiniLMEmbedder, local_embedder
from activities.serving import serve_context, shares_for
from activities.types import ContextRequest
from bench.common import Section, bulk_fill, cached_vectors, percentiles, vacuum
from bench.harness import Bench, NoopWorkflow, bench_stack, load, log, noop_workflow, timed
from bench.latency_report import (
    BEFORE,
    EVERY,
    PREVIOUS,
    SCALES,
    START,
    Row,
    compactions,
    concurrency,
    ingestion,
    report,
)
from bench.previous_context import (
    previous_search,
    previous_serve_context,
    session_start,
    swapped,
)
from longthread.client import Conversation, Longthread
from longthread.locomo import load_samples
from memory.audit import ServedContext, window_digest
from memory.models import Message, ScoredMessage, ToolCall, parse_messages
from memory.policy import CompactionPolicy
from memory.retrieval import candidate_count, neighbour_hit_count
from memory.similarity import MIN_TERMS, _term_set
from memory.store.base import NOT_ERASED
from memory.store.rows import _FIELDS
from memory.store.search import LEXICAL_CTES
from memory.window import assemble_from_window

__all__ = ["append_cost", "interleaved", "run"]

SAMPLES = int(os.environ.get("LT_LATENCY_SAMPLES", "200"))
FILL_CHUNK = 2000
TENANT = "bench"



async def interleaved(ops: dict[str, Callable[[], Awaitable[Any]]], n: int,
                       between: Callable[[], Awaitable[Any]] | None = None
                       ) -> dict[str, list[float]]:
    """n samples of every op, in rotating order each round (no op always goes first)."""
    out: dict[str, list[float]] = {name: [] for name in ops}
    names = list(ops)
    for i in range(n):
        for name in names[i % len(names):] + names[: i % len(names)]:
            if between is not None:
                await between()
            out[name].append(await timed(ops[name]))
    return out


def _batches(texts: list[str]) -> Callable[[int], list[dict[str, Any]]]:
    counter = itertools.count()

    def batch(size: int) -> list[dict[str, Any]]:
        return [{"id": str(uuid.uuid4()), "role": "user",
                 "content": texts[next(counter) % len(texts)]} for _ in range(size)]

    return batch


async def append_cost(bench: Bench, noop: Any, texts: list[str], n: int,
                       quiet: bool) -> dict[str, list[float]]:
    conv = await bench.lt.conversation(f"append-{'quiet' if quiet else 'live'}", tenant=TENANT)
    batch = _batches(texts)

    async def settle() -> None:
        await conv.settle(timeout=600, poll=0.05)

    ops: dict[str, Callable[[], Awaitable[Any]]] = {
        "no-op update": lambda: noop.execute_update(NoopWorkflow.noop),
        "append_many(1)": lambda: conv.append_many(batch(1)),
        "append_many(100)": lambda: conv.append_many(batch(100)),
    }
    if quiet:  # the store's transaction alone, what the local activity runs
        direct = f"append-direct-{uuid.uuid4()}"
        ops["  store.append_messages(1) alone"] = lambda: bench.store.append_messages(
            TENANT, direct, parse_messages(batch(1)))
        ops["  store.append_messages(100) alone"] = lambda: bench.store.append_messages(
            TENANT, direct, parse_messages(batch(100)))
    return await interleaved(ops, n, between=settle if quiet else None)


async def _fill_session(bench: Bench, session: str, scale: int, texts: list[str],
                        base: np.ndarray) -> tuple[Conversation, float]:
    """Grow `session` to `scale` messages; returns it settled, and the seconds it took."""
    t0 = time.perf_counter()
    conv = await bench.lt.conversation(session, tenant=TENANT)
    have = await bench.store.count(TENANT, session)
    filler = _batches(texts)
    while have < scale:
        n = min(FILL_CHUNK, scale - have) - 1
        if n > 0:
            await bulk_fill(bench.store, TENANT, session, n, texts, base, prefix=f"{session}-",
                            first=have)
        await conv.append_many(filler(1))  # the workflow takes the cursors and compacts
        have = await bench.store.count(TENANT, session)
        await conv.settle(timeout=900)
    await vacuum(bench.store)
    return conv, time.perf_counter() - t0


async def _context_parts(bench: Bench, conv: Conversation, embedder: Embedder,
                         questions: list[str], n: int) -> list[Row]:
    """The parts of one context() at the largest scale, each timed alone."""
    store = bench.store
    qs = itertools.cycle(questions)
    vector = (await embedder.embed([questions[0]]))[0]
    request = ContextRequest(query=questions[0], max_tokens=2000)
    # What serve_context asks the store for: k for the budget, the default neighbours.
    k = max(request.k, candidate_count(request.max_tokens))
    near = neighbour_hit_count(k)

    # Each search part takes the next question with its own vector and BM25 ranks, as a
    # context() does: a vector searched again finds the HNSW pages it needs in shared buffers
    # (at 100k the index is larger than the embedded Postgres's 128 MB), so one fixed vector
    # measured the vector leg warm, several times faster than a new query's.
    # Each of the three search parts has its own questions (disjoint when there are enough).
    per = max(1, min(n, len(questions) // 3))

    async def legs_for(part: int) -> Iterator[tuple[str, list[float], list[tuple[str, int]]]]:
        asked = (questions[part * per:(part + 1) * per] or questions)[:per]
        return itertools.cycle([
            (q, (await embedder.embed([q]))[0],
             await store.lexical_ranks(TENANT, conv.session, q, k)) for q in asked])

    search_legs, fused_legs, old_legs = [await legs_for(part) for part in range(3)]

    async def embed() -> None:
        await embedder.embed([next(qs)])

    async def search() -> None:
        q, v, _ = next(search_legs)
        await store.search(TENANT, conv.session, q, v, k, neighbours=request.neighbours,
                           neighbour_hits=near)

    async def lexical() -> None:
        await store.lexical_ranks(TENANT, conv.session, next(qs), k)

    async def lexical_before() -> None:
        with session_start():
            await store.lexical_ranks(TENANT, conv.session, next(qs), k)

    async def fused() -> None:
        _, v, r = next(fused_legs)
        await store.fused(TENANT, conv.session, r, v, k, neighbours=request.neighbours,
                          neighbour_hits=near)

    async def old_search() -> None:
        q, v, _ = next(old_legs)
        await previous_search(store, TENANT, conv.session, q, v, k, request.neighbours)

    async def window() -> None:
        await store.read_window(TENANT, conv.session, 2000)

    snapshot = await store.read_window(TENANT, conv.session, 2000)
    found = await store.search(TENANT, conv.session, questions[0], vector, k,
                               neighbours=request.neighbours, neighbour_hits=near)
    candidates = [c for c in found if c.seq is not None and c.seq < snapshot.turn]

    async def assemble() -> None:
        assemble_from_window(snapshot.state, max_tokens=2000, retrieved=candidates,
                             shares=shares_for(request), query=questions[0])

    window_ = assemble_from_window(snapshot.state, max_tokens=2000, retrieved=candidates,
                                   shares=shares_for(request), query=questions[0])
    served = ServedContext(seq=0, turn=snapshot.turn, query=questions[0], max_tokens=2000,
                           tokens=window_.tokens, source_ids=tuple(window_.source_ids),
                           digest=window_digest(window_), ledger_seq=snapshot.version,
                           retrieved=tuple((c.message.id, c.score) for c in candidates))

    async def record() -> None:
        await store.record_served(TENANT, conv.session, served)

    async def record_before() -> None:  # before migration 17: a number from one sequence
        await store._batch(TENANT, [(_RECORD_SERVED_BEFORE, {
            "tenant": TENANT, "session": f"{conv.session}-before", "turn": served.turn,
            "record": served.model_dump_json()})])

    times = await interleaved({"  query embedding alone": embed,
                                f"  store.search alone (k={k}, ±{request.neighbours} "
                                f"neighbours of the best {near})": search,
                                "    its BM25 leg, store.lexical_ranks alone": lexical,
                                f"    the BM25 leg at {START}": lexical_before,
                                "    its vector leg + fusion + fetch, store.fused alone":
                                    fused,
                                f"  the single search statement before a75e913 (k={k})":
                                    old_search,
                                "  store.read_window alone": window,
                                "  assemble_from_window alone (CPU)": assemble,
                                "  store.record_served alone": record,
                                "  store.record_served before migration 17 (one sequence)":
                                    record_before}, n)
    return [(name, percentiles(v)) for name, v in times.items()]


# `memory.store.served`'s statement before migration 17, to time beside the one after it.
_RECORD_SERVED_BEFORE = f"""
WITH next AS (SELECT nextval('served_contexts_seq') AS seq)
INSERT INTO served_contexts (tenant, session, seq, turn, record)
SELECT %(tenant)s, %(session)s, next.seq, %(turn)s,
       jsonb_set(%(record)s::jsonb, '{{seq}}', to_jsonb(next.seq))
FROM next WHERE {NOT_ERASED}
RETURNING seq
"""


async def _ask(conv: Conversation, queries: Iterator[str]) -> object:
    return await conv.context(next(queries), max_tokens=2000)


async def _ask_idle(conv: Conversation) -> object:
    """An agent loop's call with no query: the window version and the condensed hierarchy,
    no retrieval (version 6 fills the summary share of such a window)."""
    return await conv.context(max_tokens=2000)




# The three pieces the 05:30 latency work changed, as they were at c9ce66a: the BM25 statement
# that numbered every matching message before keeping k, the near-duplicate pass with one
# (group, term) index and a Python sort key, and candidate rows built with
# object.__setattr__ and a generator per row.
_BEFORE_LEXICAL = "WITH " + LEXICAL_CTES + "SELECT id, rank FROM lex ORDER BY rank"


def _before_near_duplicates(texts: Sequence[str], threshold: float = 0.9,
                            groups: Sequence[str] | None = None) -> dict[int, int]:
    """c9ce66a's memory.similarity.near_duplicates, verbatim but for the docstring."""
    sets = [_term_set(t) for t in texts]
    df = Counter(itertools.chain.from_iterable(sets))
    rank = {term: r for r, term in enumerate(sorted(df, key=lambda term: (df[term], term)))}
    index: dict[tuple[Hashable, str], list[int]] = {}
    duplicates: dict[int, int] = {}
    for i, terms in enumerate(sets):
        size = len(terms)
        if size < MIN_TERMS:
            continue
        group = None if groups is None else groups[i]
        prefix = sorted(terms, key=rank.__getitem__)[
            : size - math.ceil(threshold * size - 1e-9) + 1]
        keys = [(group, term) for term in prefix]
        found = sorted({j for key in keys for j in index.get(key, ())})
        for j in found:
            other = sets[j]
            shared = len(terms & other)
            if shared / (size + len(other) - shared) >= threshold:
                duplicates[i] = j
                break
        else:
            for key in keys:
                index.setdefault(key, []).append(i)
    return duplicates


def _before_built(cls: type[Any], values: dict[str, Any]) -> Any:
    model = object.__new__(cls)
    object.__setattr__(model, "__dict__", values)
    object.__setattr__(model, "__pydantic_fields_set__", set(_FIELDS[cls]))
    object.__setattr__(model, "__pydantic_extra__", None)
    object.__setattr__(model, "__pydantic_private__", None)
    return model


def _before_row_to_scored(row: dict[str, Any], score: float, session: str) -> ScoredMessage:
    """c9ce66a's memory.store.rows.row_to_scored (with its row_to_message and built)."""
    message = _before_built(Message, {
        "id": row["id"], "role": row["role"], "content": row["content"],
        "created_at": row["created_at"], "name": row["name"],
        "tool_call_id": row["tool_call_id"],
        "tool_calls": tuple(ToolCall.model_construct(**c) for c in row["tool_calls"] or ()),
        "metadata": row["metadata"] if row["metadata"] is not None else {}})
    scored: ScoredMessage = _before_built(ScoredMessage, {
        "message": message, "score": score, "session": session, "seq": row["seq"]})
    return scored


def _before_perf() -> AbstractContextManager[None]:
    """Today's serving code with c9ce66a's three pieces (above); put back on exit. Only for a
    bench that runs one call at a time."""
    return swapped([
        (memory.store.store, "LEXICAL", _BEFORE_LEXICAL),
        (memory.store.store, "row_to_scored", _before_row_to_scored),
        (memory.retrieval, "near_duplicates", _before_near_duplicates)])


def _every_neighbour() -> AbstractContextManager[None]:
    """Serving as at dbfc7d5: every hit brings its neighbours, not only the best half."""
    return swapped([(activities.serving, "neighbour_hit_count", lambda _k: None)])


async def _ask_every(conv: Conversation, queries: Iterator[str]) -> object:
    """conv.context as at dbfc7d5 (neighbours of every hit)."""
    with _every_neighbour():
        return await conv.context(next(queries), max_tokens=2000)


async def _ask_before(conv: Conversation, queries: Iterator[str]) -> object:
    """conv.context with the BM25 statement, near-duplicate pass and row building of c9ce66a
    (and, as then, neighbours of every hit)."""
    with _before_perf(), _every_neighbour():
        return await conv.context(next(queries), max_tokens=2000)


async def _ask_start(conv: Conversation, queries: Iterator[str]) -> object:
    """conv.context with the search, row building and near-duplicate pass of 3fe83f3 (and,
    as then, neighbours of every hit)."""
    with session_start(), _every_neighbour():
        return await conv.context(next(queries), max_tokens=2000)


async def _ask_previous(bench: Bench, session: str, queries: Iterator[str]) -> object:
    """What conv.context(query, max_tokens=2000) ran before a75e913."""
    return await previous_serve_context(bench.store, bench.lt.embedder(), TENANT, session,
                                        ContextRequest(query=next(queries), max_tokens=2000))


async def _same_windows(bench: Bench, conv: Conversation, questions: list[str]) -> None:
    """The old codes serve the window that dbfc7d5's serving (neighbours of every hit) serves
    for the same question."""
    for q in questions:
        new = await _ask_every(conv, iter([q]))
        old = await _ask_previous(bench, conv.session, iter([q]))
        assert new == old, f"old and new context() differ for {q!r}"
        start = await _ask_start(conv, iter([q]))
        assert new == start, f"context() at {START} and now differ for {q!r}"
        before = await _ask_before(conv, iter([q]))
        assert new == before, f"context() at {BEFORE} and now differ for {q!r}"


async def _context_latency(bench: Bench, noop: Any, texts: list[str], base: np.ndarray,
                           questions: list[str], n: int) -> tuple[list[Row], dict[str, Any]]:
    rows: list[Row] = []
    info: dict[str, Any] = {"fill_s": {}, "load": {}}
    onnx: Embedder | None = OnnxMiniLMEmbedder() if OnnxMiniLMEmbedder.available() else None
    if onnx is not None:
        await onnx.embed(["warm up"])
    conv: Conversation | None = None
    for scale in SCALES:
        conv, fill_s = await _fill_session(bench, f"context-{scale}", scale, texts, base)
        log("latency", f"filled {scale:,} in {fill_s:.0f} s; sampling context()")
        info["fill_s"][scale] = fill_s
        qs = itertools.cycle(questions)
        ops: dict[str, Callable[[], Awaitable[Any]]] = {
            "no-op update": lambda: noop.execute_update(NoopWorkflow.noop),
            f"context() at {scale:,}": functools.partial(_ask, conv, qs),
        }
        if scale == SCALES[-1]:
            # The code before this session's changes, interleaved in the same loop.
            await _same_windows(bench, conv, questions[:5])
            ops[f"context() at {scale:,}, no query"] = functools.partial(_ask_idle, conv)
            ops[f"context() at {scale:,}, code at {EVERY}"] = functools.partial(
                _ask_every, conv, qs)
            ops[f"context() at {scale:,}, {PREVIOUS}"] = functools.partial(
                _ask_previous, bench, conv.session, qs)
            ops[f"context() at {scale:,}, code at {START}"] = functools.partial(
                _ask_start, conv, qs)
            ops[f"context() at {scale:,}, code at {BEFORE}"] = functools.partial(
                _ask_before, conv, qs)
        if onnx is not None and scale == SCALES[-1] and type(bench.embedder) is not type(onnx):
            lt = Longthread(bench.client, bench.lt.settings, bench.lt.policy,
                            store=bench.store, embedder=onnx)
            other = await lt.conversation(conv.session, tenant=TENANT)
            ops[f"context() at {scale:,}, ONNX int8 query embedder"] = functools.partial(
                _ask, other, qs)
        times = await interleaved(ops, n)
        info["load"][scale] = load()
        rows.append((f"no-op update (with context() at {scale:,})",
                     percentiles(times.pop("no-op update"))))
        rows.extend((name, percentiles(v)) for name, v in times.items())
    assert conv is not None
    info["count"] = await bench.store.count(TENANT, conv.session)
    rows.extend(await _context_parts(bench, conv, bench.embedder, questions, n))
    if onnx is not None:
        qs2 = itertools.cycle(questions)
        rows.append(("  ONNX query embedding alone", percentiles(
            [await timed(lambda: onnx.embed([next(qs2)])) for _ in range(n)])))
    # What one served context costs beyond its reads: assembly and the served record.
    request = ContextRequest(query=questions[0], max_tokens=2000)
    rows.append(("  serve_context with a precomputed query vector", percentiles(
        [await timed(lambda: serve_context(bench.store, _Fixed(bench.embedder), TENANT,
                                           conv.session, request)) for _ in range(n)])))
    return rows, info


class _Fixed:
    """A query embedder that returns one cached vector: serve_context minus the embedding."""

    def __init__(self, inner: Embedder) -> None:
        self.inner = inner
        self.cache: dict[str, list[list[float]]] = {}

    async def embed(self, texts: list[str]) -> list[list[float]]:
        key = "\n".join(texts)
        if key not in self.cache:
            self.cache[key] = await self.inner.embed(texts)
        return self.cache[key]


async def run(n: int = SAMPLES) -> tuple[Section, dict[str, Any]]:
    started = time.perf_counter()
    samples = load_samples()
    texts = [m["content"] for s in samples for m in s.messages]
    questions = [q["question"] for s in samples for q in s.questions]
    base = cached_vectors(texts, local_embedder().embed_sync, "locomo-minilm")
    extra: dict[str, Any] = {"load_start": load()}
    append_rows: list[Row] = []
    async with bench_stack(CompactionPolicy()) as bench, noop_workflow(bench) as noop:
        # Context first, on an otherwise idle worker; the live appends last, since the
        # embedding backlog they leave would run under everything measured after them.
        log("latency", "context()")
        context_rows, extra["context"] = await _context_latency(bench, noop, texts, base,
                                                                 questions, n)
        extra["load_context"] = load()
        log("latency", "compaction, ingestion, concurrency")
        extra["compact"] = percentiles(await compactions(bench, samples[0].messages))
        extra["ingest_per_s"] = await ingestion(bench, samples[0].messages)
        extra["concurrency"] = await concurrency(bench, texts)
        for quiet in (True, False):
            log("latency", f"append cost, {'quiet' if quiet else 'live'}")
            times = await append_cost(bench, noop, texts, n if not quiet else max(30, n // 3),
                                       quiet)
            label = "quiet" if quiet else "live"
            append_rows.extend((f"{name} [{label}]", percentiles(v)) for name, v in times.items())
        extra["load_append"] = load()
    extra["seconds"] = time.perf_counter() - started
    extra["load_end"] = load()
    rows = append_rows + context_rows
    return report(append_rows, context_rows, extra), {"rows": rows, **extra}


if __name__ == "__main__":
    print(asyncio.run(run())[0].markdown)
