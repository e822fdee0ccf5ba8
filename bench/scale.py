"""Many sessions in one archive: search latency and HNSW recall@10 as the archive grows.

1M archived messages over 1,000 sessions does not fit a benchmark run on 2 cores here (the
fill alone is ~25 minutes), so this measures growing sizes that do, at 1,000 messages per
session, and projects 1M from the measured growth (a least-squares line, labelled as such).
"""

from __future__ import annotations

import asyncio
import os
import time

import numpy as np
from pgvector import Vector

from activities.providers.embedders import local_embedder
from bench.common import Section, bench_store, percentiles
from bench.harness import embedder_name
from longthread.locomo import load_samples
from memory.models import Message
from memory.store.store import Store

PER_SESSION = 1_000
EF_SEARCH = (40, 100, 200)


def _sizes() -> list[int]:
    raw = os.environ.get("LT_SCALE_SIZES", "20000,50000,100000")
    return [int(x) for x in raw.split(",")]


async def _vector_ids(store: Store, session: str, vector: list[float]) -> list[str]:
    async with store.scoped("scale") as conn:
        cur = await conn.execute(
            "SELECT id FROM messages WHERE tenant = 'scale' AND session = %s"
            " ORDER BY embedding <=> %s LIMIT 10",
            (session, Vector(np.asarray(vector, np.float32))))
        return [row["id"] for row in await cur.fetchall()]


async def run(queries: int = 100) -> tuple[Section, dict[str, object]]:
    sample = load_samples()
    texts = [m["content"] for s in sample for m in s.messages]
    questions = [q["question"] for s in sample for q in s.questions][:queries]
    embedder = local_embedder()  # the product's pick (choose_embedder), as users get it
    base = np.asarray(embedder.embed_sync(texts))
    qvecs = embedder.embed_sync(questions)
    rng = np.random.default_rng(3)
    rows = []
    async with bench_store() as store:
        filled = 0
        for size in _sizes():
            t0 = time.perf_counter()
            for s in range(filled // PER_SESSION, size // PER_SESSION):
                picks = rng.integers(0, len(texts), PER_SESSION)
                vecs = base[picks] + rng.normal(0, 0.04, size=(PER_SESSION, base.shape[1]))
                vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
                msgs = [Message(id=f"m{i}", role="user", content=texts[p])
                        for i, p in enumerate(picks.tolist())]
                await store.append_messages("scale", f"s{s}", msgs)
                await store.index_terms("scale", f"s{s}")
                await store.set_embeddings("scale", f"s{s}", [
                    (m.id, v) for m, v in zip(msgs, vecs.tolist(), strict=True)])
            fill = time.perf_counter() - t0
            filled = size
            sessions = size // PER_SESSION
            lat = []
            for q, v in zip(questions, qvecs, strict=True):
                session = f"s{rng.integers(0, sessions)}"
                t1 = time.perf_counter()
                await store.search("scale", session, q, v, k=10)
                lat.append((time.perf_counter() - t1) * 1000)
            recalls = {}
            for ef in EF_SEARCH:
                store.ef_search = ef
                hits = []
                for v in qvecs[:50]:
                    session = f"s{rng.integers(0, sessions)}"
                    exact = set(await store.exact_neighbours("scale", session, v, 10))
                    hits.append(len(exact & set(await _vector_ids(store, session, v))) / 10)
                recalls[ef] = float(np.mean(hits))
            store.ef_search = 200
            rows.append((size, sessions, percentiles(lat), recalls, fill))
    sizes = np.array([r[0] for r in rows], dtype=float)
    p95 = np.array([r[2]["p95"] for r in rows])
    slope, intercept = np.polyfit(sizes, p95, 1)
    projected = slope * 1_000_000 + intercept
    lines = [f"| {size:,} | {sessions} | {p['p50']:.1f} | {p['p95']:.1f} | "
             + " | ".join(f"{rec[ef]:.3f}" for ef in EF_SEARCH) + f" | {fill:.0f} s |"
             for size, sessions, p, rec, fill in rows]
    md = ("| archived | sessions | search p50 ms | search p95 ms | "
          + " | ".join(f"recall@10 ef={ef}" for ef in EF_SEARCH) + " | fill time |\n"
          "|---|---|---|---|---|---|---|---|\n" + "\n".join(lines) + "\n\n"
          f"Vectors: {embedder_name(embedder)}, with noise.\n\n"
          f"Projected search p95 at 1,000,000 archived over 1,000 sessions (linear fit of the "
          f"rows above, **not measured**): {projected:.1f} ms.\n")
    return Section("Scale: many sessions (issue 7.3)", md), {"rows": rows, "projected": projected}


if __name__ == "__main__":
    print(asyncio.run(run())[0].markdown)
