"""Shared benchmark helpers: the embedded stack, percentiles, the machine, the LoCoMo data."""

from __future__ import annotations

import json
import os
import platform
import statistics
import tempfile
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil

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
