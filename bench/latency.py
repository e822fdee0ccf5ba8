"""Latency against a no-op Temporal update measured in the same run, plus throughput.

p50/p95/p99 for append_many (1 and 50 messages), context() at 1k/10k/100k archived
messages, and one extractive compaction; each as a ratio to the no-op update's percentile.
Throughput: ingestion with local embeddings, and 200 conversations from 20 concurrent clients.
"""

from __future__ import annotations

import asyncio
import functools
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import numpy as np

from bench.common import Section, percentiles, vacuum
from bench.harness import Bench, NoopWorkflow, bench_stack
from longthread.client import Conversation
from longthread.locomo import load_samples
from memory.models import Message
from memory.policy import CompactionPolicy

SCALES = (1_000, 10_000, 100_000)
SAMPLES = 60


async def _timed(fn: Callable[[], Awaitable[Any]], n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        await fn()
        out.append((time.perf_counter() - t0) * 1000)
    return out


async def _append(conv: Conversation, batch: Callable[[int], list[dict[str, Any]]],
                  size: int) -> object:
    return await conv.append_many(batch(size))


async def _context(conv: Conversation, queries: Iterator[str]) -> object:
    return await conv.context(next(queries), max_tokens=2000)


async def _bulk_archive(bench: Bench, session: str, n: int, offset: int,
                        texts: list[str], base: np.ndarray) -> None:
    """Fill the archive directly (the workflow path is measured separately) with LoCoMo
    turns and noisy copies of their real embeddings."""
    rng = np.random.default_rng(offset)
    for start in range(0, n, 5000):
        idx = np.arange(start, min(start + 5000, n))
        vecs = base[idx % len(texts)] + rng.normal(0, 0.04, size=(len(idx), base.shape[1]))
        vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
        msgs = [(offset + int(i), Message(id=f"bulk{offset + int(i)}", role="user",
                                          content=f"{texts[i % len(texts)]} (copy {i})"))
                for i in idx]
        await bench.store.archive("bench", session, msgs, vecs.tolist())
    await vacuum(bench.store)


async def run(n: int = SAMPLES) -> tuple[Section, dict[str, Any]]:
    sample = load_samples()[0]
    texts = [m["content"] for m in sample.messages]
    questions = [q["question"] for q in sample.questions][:n]
    rows: list[tuple[str, dict[str, float]]] = []
    extra: dict[str, Any] = {}
    async with bench_stack(CompactionPolicy(context_window=100_000)) as bench:
        base = np.asarray(bench.embedder.embed_sync(texts))
        noop = await bench.client.start_workflow(NoopWorkflow.run, id=f"noop-{uuid.uuid4()}",
                                                 task_queue=bench.queue + "-noop")
        baseline = percentiles(await _timed(lambda: noop.execute_update(NoopWorkflow.noop), n))
        rows.append(("no-op update (baseline)", baseline))
        conv = await bench.lt.conversation("latency", tenant="bench")
        counter = iter(range(10**9))

        def batch(size: int) -> list[dict[str, Any]]:
            return [{"id": f"a{next(counter)}", "role": "user", "content": texts[i % 400]}
                    for i in range(size)]

        for size in (1, 50):
            rows.append((f"append_many({size})", percentiles(
                await _timed(functools.partial(_append, conv, batch, size), n))))
        # context() is measured in its own session, once the appends above are embedded and
        # archived (measuring during that backlog would time the backlog, not the search).
        await conv.settle(timeout=600)
        ctx = await bench.lt.conversation("latency-context", tenant="bench")
        await ctx.append_many(batch(50))
        await ctx.settle(timeout=600)
        archived = await bench.store.count("bench", "latency-context")
        for scale in SCALES:
            await _bulk_archive(bench, "latency-context", scale - archived, 10**7 + archived,
                                texts, base)
            archived = await bench.store.count("bench", "latency-context")
            assert archived == scale, (archived, scale)
            queries = iter(questions * 10)
            rows.append((f"context() at {scale:,} archived", percentiles(await _timed(
                functools.partial(_context, ctx, queries), n))))
        comp = await bench.lt.conversation("compaction", tenant="bench")
        times = []
        for round_ in range(5):
            await comp.append_many([{**m, "id": f"r{round_}-{m['id']}"}
                                    for m in sample.messages[:200]])
            t0 = time.perf_counter()
            await comp.compact(preserve_recent=4)
            times.append((time.perf_counter() - t0) * 1000)
        rows.append(("compact(), extractive, ~200 messages", percentiles(times)))
        extra["ingest_per_s"] = await _ingestion(bench, sample.messages)
        extra["concurrency"] = await _concurrency(bench, texts)
        await noop.signal(NoopWorkflow.stop)
    return _report(rows, baseline, extra), {"rows": rows, **extra}


async def _ingestion(bench: Bench, messages: list[dict[str, Any]]) -> float:
    """Messages per second from first append to last one archived (embedded + stored)."""
    conv = await bench.lt.conversation("ingest", tenant="bench")
    msgs = [{**m, "id": f"{k}-{m['id']}"} for k in range(5) for m in messages][:2000]
    t0 = time.perf_counter()
    for start in range(0, len(msgs), 50):
        await conv.append_many(msgs[start : start + 50])
    while (await conv.stats()).pending_archive:
        await asyncio.sleep(0.05)
    return len(msgs) / (time.perf_counter() - t0)


async def _concurrency(bench: Bench, texts: list[str]) -> dict[str, int]:
    """200 live conversations driven by 20 concurrent clients; every error is counted."""
    gate = asyncio.Semaphore(20)
    errors = 0
    ok = 0

    async def one(k: int) -> None:
        nonlocal errors, ok
        async with gate:
            try:
                conv = await bench.lt.conversation(f"live-{k}", tenant="bench")
                for j in range(3):
                    await conv.append_many([{"id": f"{j}-{i}", "role": "user",
                                             "content": texts[(k + i) % len(texts)]}
                                            for i in range(5)])
                window = await conv.context(texts[k % len(texts)], max_tokens=500)
                assert window.tokens <= 500
                ok += 1
            except Exception:
                errors += 1

    await asyncio.gather(*(one(k) for k in range(200)))
    return {"conversations": 200, "clients": 20, "ok": ok, "errors": errors}


def _report(rows: list[tuple[str, dict[str, float]]], base: dict[str, float],
            extra: dict[str, Any]) -> Section:
    lines = [f"| {name} | {p['p50']:.1f} | {p['p95']:.1f} | {p['p99']:.1f} | "
             f"{p['p50'] / base['p50']:.2f}× | {p['p95'] / base['p95']:.2f}× |"
             for name, p in rows]
    c = extra["concurrency"]
    md = ("| operation | p50 ms | p95 ms | p99 ms | p50 / no-op | p95 / no-op |\n"
          "|---|---|---|---|---|---|\n" + "\n".join(lines) + "\n\n"
          f"Ingestion with local MiniLM embeddings: **{extra['ingest_per_s']:.0f} messages/s** "
          "(2,000 LoCoMo turns, first append to last archived).\n\n"
          f"{c['conversations']} live conversations from {c['clients']} concurrent clients: "
          f"{c['ok']} completed, **{c['errors']} errors**.\n")
    return Section("Latency and throughput (issue 7.2-7.3)", md)
