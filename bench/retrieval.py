"""Retrieval from one session with many archived messages: latency and HNSW recall@10.

Vectors are real MiniLM embeddings of LoCoMo turns plus noisy variants of them (so the data
has the clustered, near-duplicate shape of a long chat); queries are LoCoMo questions. The
session is filled through `Store.append_messages` + `Store.set_embeddings` (`bulk_fill`).
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import numpy as np

from activities.providers.embedders import local_embedder
from bench.common import (
    Section,
    bench_store,
    bulk_fill,
    load_locomo,
    locomo_turns,
    percentiles,
    vacuum,
)
from bench.harness import embedder_name
from memory.store.store import Store

EF_SEARCH = (40, 100, 200)


async def run(scale: int = 100_000, queries: int = 100) -> Section:
    data = load_locomo()
    turns = [t for sample in data for t in locomo_turns(sample)]
    texts = [t[2] for t in turns]
    questions = [q["question"] for s in data for q in s["qa"]][:queries]
    embedder = local_embedder()  # the product's pick (choose_embedder), as users get it
    base = np.asarray(embedder.embed_sync(texts), dtype=np.float64)
    qvecs = embedder.embed_sync(questions)
    keep = Path(os.environ["LT_BENCH_KEEP"]) if os.environ.get("LT_BENCH_KEEP") else None
    async with bench_store(keep=keep) as store:
        have = await store.count("bench", "big")
        fill_s = 0.0
        if have < scale:
            fill_s = await bulk_fill(store, "bench", "big", scale - have, texts, base,
                                     prefix="m", first=have)
        fresh = await _search_latency(store, questions, qvecs)
        await vacuum(store)
        lat = await _search_latency(store, questions, qvecs)
        lexical = []
        for q in questions:
            t0 = time.perf_counter()
            await store.lexical("bench", "big", q, k=10)
            lexical.append((time.perf_counter() - t0) * 1000)
        lex = percentiles(lexical)
        recall_rows = []
        for ef in EF_SEARCH:
            store.ef_search = ef
            recalls, vec_lat = [], []
            for v in qvecs:
                exact = set(await store.exact_neighbours("bench", "big", v, 10))
                t0 = time.perf_counter()
                approx = await _vector_only(store, v)
                vec_lat.append((time.perf_counter() - t0) * 1000)
                recalls.append(len(exact & set(approx)) / 10)
            recall_rows.append((ef, float(np.mean(recalls)), percentiles(vec_lat)["p50"]))
    table = "\n".join(f"| {ef} | {r:.3f} | {ms:.1f} |" for ef, r, ms in recall_rows)
    md = (
        f"{scale:,} archived messages in one session (filled in {fill_s:.0f} s), "
        f"{len(questions)} LoCoMo questions as queries; vectors from "
        f"{embedder_name(embedder)}.\n\n"
        "| k=10 | p50 ms | p95 ms | p99 ms |\n"
        "|---|---|---|---|\n"
        f"| hybrid store.search (HNSW + BM25, RRF) | {lat['p50']:.1f} | {lat['p95']:.1f} "
        f"| {lat['p99']:.1f} |\n"
        f"| the same, right after the bulk fill (before vacuum) | {fresh['p50']:.1f} "
        f"| {fresh['p95']:.1f} | {fresh['p99']:.1f} |\n"
        f"| BM25 leg alone (store.lexical) | {lex['p50']:.1f} | {lex['p95']:.1f} "
        f"| {lex['p99']:.1f} |\n\n"
        "| ef_search | HNSW recall@10 vs exact | vector-only p50 ms |\n|---|---|---|\n"
        f"{table}\n"
    )
    return Section("Retrieval at scale (issue 4)", md)


async def _search_latency(store: Store, questions: list[str],
                          vectors: list[list[float]]) -> dict[str, float]:
    latencies = []
    for q, v in zip(questions, vectors, strict=True):
        t0 = time.perf_counter()
        hits = await store.search("bench", "big", q, v, k=10)
        latencies.append((time.perf_counter() - t0) * 1000)
        assert len(hits) == 10
    return percentiles(latencies)


async def _vector_only(store: Store, vector: list[float]) -> list[str]:
    from pgvector import Vector

    async with store.scoped("bench") as conn:
        cur = await conn.execute(
            "SELECT id FROM messages WHERE tenant = 'bench' AND session = 'big'"
            " ORDER BY embedding <=> %s LIMIT 10", (Vector(np.asarray(vector, np.float32)),))
        return [row["id"] for row in await cur.fetchall()]


if __name__ == "__main__":
    section = asyncio.run(run())
    print(section.markdown)
