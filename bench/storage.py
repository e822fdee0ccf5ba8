"""Storage as a session grows: what the tables of one long session weigh, baseline beside HEAD.

Issue 11's 1M-message run left an 18 GB database, and the linear tables explained about 3.5 GB
of it: every window version copied each of its summaries, and each merged summary copied the
`covers` of what it merged. This probe appends LoCoMo turns to one session through the client
(batches of 500, UUID ids, the default policy), lets compaction catch up at each checkpoint
(default 10k, 30k, 60k; `LT_STORAGE_SIZES`), and reads the size of every table the session
writes, the largest ledger record and the largest row of summaries a window version needs.

Both layouts run in one invocation: this tree, and the baseline tree (`LT_STORAGE_BASE`, a
commit; default `2db6074`, the last commit before migration 10) checked out into a temporary
git worktree. Each runs in its own process (`python -m bench.storage --probe`) started in its
tree, so each imports its own code. Embeddings are a constant vector here: they cost the same
in both layouts, and the real model would spend the 2 cores on embedding instead of storing.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.ceiling import _wait_compacted
from bench.common import Section
from bench.harness import Bench, bench_stack
from longthread.locomo import default_path, load_samples
from memory.policy import CompactionPolicy

ROOT = Path(__file__).resolve().parents[1]
LOCOMO = default_path()
BATCH = 500
TENANT = "bench"
TABLES = ("messages", "message_terms", "window_versions", "summaries", "ledger")


class ConstantEmbedder:
    """A fixed unit vector: storage does not depend on what the vectors say."""

    name = "constant"
    dim = 384

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        return [[1.0] + [0.0] * (self.dim - 1) for _ in texts]


def sizes() -> list[int]:
    return [int(s) for s in os.environ.get("LT_STORAGE_SIZES", "10000,30000,60000").split(",")]


async def _measure(bench: Bench) -> dict[str, Any]:
    async with bench.store.pool.connection() as conn:  # whole tables, across tenants
        cur = await conn.execute(
            "SELECT relname, pg_total_relation_size(oid) AS bytes FROM pg_class"
            " WHERE relkind = 'r' AND relname = ANY(%s)", (list(TABLES),))
        tables = {r["relname"]: int(r["bytes"]) for r in await cur.fetchall()}
        cur = await conn.execute("SELECT max(pg_column_size(record)) AS b FROM ledger")
        ledger_row = await cur.fetchone()
        cur = await conn.execute("SELECT count(*) AS n FROM window_versions")
        versions = await cur.fetchone()
        cur = await conn.execute("SELECT pg_database_size(current_database()) AS b")
        database = await cur.fetchone()
    assert ledger_row is not None and versions is not None and database is not None
    return {"tables": tables, "largest_record": int(ledger_row["b"] or 0),
            "versions": int(versions["n"]), "database": int(database["b"])}


async def probe(targets: list[int]) -> list[dict[str, Any]]:
    """Run in the tree under test (its own imports): append, settle compaction, measure."""
    policy = CompactionPolicy()
    texts = [m["content"] for s in load_samples() for m in s.messages]
    rows: list[dict[str, Any]] = []
    async with bench_stack(policy, embedder=ConstantEmbedder()) as bench:
        session = f"storage-{uuid.uuid4()}"
        conv = await bench.lt.conversation(session, tenant=TENANT)
        t0 = time.perf_counter()
        for start in range(0, targets[-1], BATCH):
            await conv.append_many([
                {"id": str(uuid.uuid4()), "role": "user" if i % 2 == 0 else "assistant",
                 "content": texts[i % len(texts)]} for i in range(start, start + BATCH)])
            done = start + BATCH
            if done in targets:
                settle = await _wait_compacted(conv, policy, 1800)
                stats = await conv.stats()
                rows.append({"messages": done, "ledger_head": stats.ledger_head,
                             "seconds": time.perf_counter() - t0, "settle": settle,
                             **await _measure(bench)})
                print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    return rows


def _run_in(tree: Path, targets: list[int]) -> list[dict[str, Any]]:
    # The probe is this file; the baseline tree may not have it, so it is copied in.
    (tree / "bench" / "storage.py").write_text(Path(__file__).read_text())
    env = {**os.environ, "LT_STORAGE_SIZES": ",".join(map(str, targets)),
           "LONGTHREAD_LOCOMO": str(LOCOMO)}  # the worktree is not beside ../shared
    done = subprocess.run([sys.executable, "-m", "bench.storage", "--probe"], cwd=tree,
                          env=env, check=True, stdout=subprocess.PIPE, text=True)
    return list(json.loads(done.stdout))


def _mb(n: int) -> str:
    return f"{n / 2**20:,.1f}"


def report(base_commit: str, base: list[dict[str, Any]], head: list[dict[str, Any]]
           ) -> Section:
    lines = ["| layout | messages | records | versions | " + " | ".join(TABLES)
             + " | these tables | largest ledger record | database |",
             "|---|" + "---|" * (len(TABLES) + 7)]
    for name, rows in ((f"baseline `{base_commit}`", base), ("HEAD", head)):
        for r in rows:
            t = r["tables"]
            lines.append(
                f"| {name} | {r['messages']:,} | {r['ledger_head']} | {r['versions']} | "
                + " | ".join(_mb(t[k]) if k in t else "—" for k in TABLES)
                + f" | {_mb(sum(t.values()))} | {r['largest_record'] / 1024:,.0f} KB"
                f" | {_mb(r['database'])} |")
    ratios = []
    for b, h in zip(base, head, strict=True):
        grow = ("window_versions", "summaries", "ledger")
        bs = sum(b["tables"].get(k, 0) for k in grow)
        hs = sum(h["tables"].get(k, 0) for k in grow)
        ratios.append(f"{b['messages']:,}: {_mb(bs)} → {_mb(hs)} MB ({bs / max(hs, 1):.1f}×)")
    text = (
        "Sizes in MB (table with its indexes and TOAST). One session, default policy, batches of "
        "500, compaction settled at each checkpoint; constant embeddings in both layouts.\n\n"
        + "\n".join(lines)
        + "\n\nWindow versions + summaries + ledger, baseline → HEAD: " + "; ".join(ratios)
        + ".\n")
    return Section("Storage growth: summaries stored once (issue 11)", text)


def main() -> None:
    targets = sizes()
    if "--probe" in sys.argv:
        print(json.dumps(asyncio.run(probe(targets))))
        return
    base_commit = os.environ.get("LT_STORAGE_BASE", "2db6074")
    with tempfile.TemporaryDirectory(prefix="lt-storage-") as tmp:
        tree = Path(tmp) / "base"
        subprocess.run(["git", "worktree", "add", "--detach", str(tree), base_commit],
                       cwd=ROOT, check=True, capture_output=True)
        try:
            base = _run_in(tree, targets)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT,
                           check=False, capture_output=True)
    head = asyncio.run(probe(targets))
    section = report(base_commit, base, head)
    print(f"## {section.title}\n\n{section.markdown}")


if __name__ == "__main__":
    main()
