"""Shared benchmark helpers: the embedded stack, percentiles, the machine, the LoCoMo data."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import statistics
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import psutil

from memory.models import Message
from memory.store.db import open_pool
from memory.store.migrations import migrate
from memory.store.store import Store
from worker.stack import EmbeddedPostgres

ROOT = Path(__file__).resolve().parents[1]
LOCOMO = Path(os.environ.get("LONGTHREAD_LOCOMO",
                             ROOT.parent / "shared" / "data" / "locomo" / "locomo-dev.json"))


@dataclass
class Section:
    title: str
    markdown: str
    plots: tuple[str, ...] = ()


def percentiles(values: Sequence[float]) -> dict[str, float]:
    ordered = sorted(values)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]

    return {"p50": statistics.median(ordered), "p95": at(0.95), "p99": at(0.99),
            "n": float(len(ordered))}


def machine() -> str:
    mem = psutil.virtual_memory().total / 2**30
    return (f"{os.cpu_count()} cores, {mem:.0f} GiB RAM, {platform.machine()}, "
            f"Python {platform.python_version()}, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")


def code_state() -> str:
    """Which code ran: the commit, and how many files outside bench/ differed from it."""
    label = os.environ.get("LT_BENCH_CODE_LABEL")
    if label:
        return label
    try:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, check=True,
                             capture_output=True, text=True).stdout.strip()
        status = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, check=True,
                                capture_output=True, text=True).stdout.splitlines()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    dirty = [line for line in status if not line[3:].startswith("bench/")]
    return (f"commit {sha}" + (f" plus the uncommitted working tree ({len(dirty)} files "
                               "outside bench/ changed or new)" if dirty else ""))


def load_locomo() -> list[dict[str, Any]]:
    if not LOCOMO.exists():
        raise FileNotFoundError(f"LoCoMo data not found at {LOCOMO} (set LONGTHREAD_LOCOMO)")
    data: list[dict[str, Any]] = json.loads(LOCOMO.read_text())
    return data


def locomo_turns(sample: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(dia_id, speaker, text, session date string) for every turn, in order."""
    conv = sample["conversation"]
    out = []
    n = 1
    while f"session_{n}" in conv:
        date = conv.get(f"session_{n}_date_time", "")
        for turn in conv[f"session_{n}"]:
            text = turn["text"]
            if turn.get("blip_caption"):
                text += f" [shares a photo: {turn['blip_caption']}]"
            out.append((turn["dia_id"], turn["speaker"], text, date))
        n += 1
    return out


CACHE = Path(os.environ.get("LT_BENCH_CACHE", "/tmp/longthread-bench"))


def cached_vectors(texts: Sequence[str], embed: Callable[[list[str]], list[list[float]]],
                   name: str) -> np.ndarray:
    """MiniLM vectors of `texts`, computed once and kept under /tmp (LT_BENCH_CACHE): on a
    busy 2-core machine embedding every LoCoMo turn takes minutes."""
    key = hashlib.sha256("\n".join(texts).encode()).hexdigest()[:16]
    path = CACHE / f"{name}-{key}.npy"
    if path.exists():
        cached: np.ndarray = np.load(path)
        return cached
    vectors = np.asarray(embed(list(texts)), dtype=np.float64)
    CACHE.mkdir(parents=True, exist_ok=True)
    np.save(path, vectors)
    return vectors


async def bulk_fill(store: Store, tenant: str, session: str, n: int, texts: Sequence[str],
                    base: np.ndarray, *, prefix: str = "bulk", first: int = 0,
                    batch: int = 5000, noise: float = 0.04, seed: int = 7) -> float:
    """Store `n` messages straight into a session, with embeddings, and return the seconds it
    took: LoCoMo turns (message i is turn i mod len(texts), marked as copy i // len(texts))
    and noisy copies of their real MiniLM vectors `base`, so the data has the clustered,
    near-duplicate shape of a long chat. Uses the store's own write path
    (`append_messages`, `index_terms`, then `set_embeddings`, as the embedding activity
    does), not the workflow, whose cost is measured elsewhere. Ids are `{prefix}{i}` for i
    in [first, first + n)."""
    rng = np.random.default_rng(seed + first)
    started = time.perf_counter()
    for start in range(first, first + n, batch):
        idx = np.arange(start, min(start + batch, first + n))
        src = idx % len(texts)
        vecs = base[src] + rng.normal(0, noise, size=(len(idx), base.shape[1]))
        vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
        msgs = [Message(id=f"{prefix}{i}", role="user" if i % 2 == 0 else "assistant",
                        content=f"{texts[s]} (copy {i // len(texts)})")
                for i, s in zip(idx.tolist(), src.tolist(), strict=True)]
        await store.append_messages(tenant, session, msgs)
        await store.index_terms(tenant, session)
        await store.set_embeddings(tenant, session, [
            (m.id, v) for m, v in zip(msgs, vecs.tolist(), strict=True)])
    return time.perf_counter() - started


async def vacuum(store: Store) -> None:
    """What autovacuum does by itself soon after a bulk insert: set the visibility map (so the
    inverted index is read by index-only scans) and refresh the planner's statistics."""
    async with store.pool.connection() as conn:
        await conn.set_autocommit(True)
        await conn.execute("VACUUM (ANALYZE) messages, message_terms")


@asynccontextmanager
async def bench_store(ef_search: int = 200, keep: Path | None = None) -> AsyncIterator[Store]:
    """A fresh embedded Postgres; with `keep`, its data stays there for the next run."""
    with tempfile.TemporaryDirectory(prefix="lt-bench-") as tmp:
        postgres = EmbeddedPostgres(keep or Path(tmp) / "pg")
        url = postgres.start()
        try:
            await migrate(url, 384)
            pool = await open_pool(url, max_size=8)
            try:
                yield Store(pool, ef_search=ef_search)
            finally:
                await pool.close()
        finally:
            postgres.stop()
