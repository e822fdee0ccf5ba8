"""Summaries metered as a window shows them (engine version 4), against the engine before it.

Clients send UUIDs. Version 6 windows show a summary line's id by its tail, but until engine
version 4 a summary was cut to its budget counting whole ids, ~40% of its tokens. This runs the
LoCoMo conversations with UUID ids, appended one message at a time and compacted as the
workflow compacts (`bench.quality_engine.replayed_window`), and builds the windows of the agent
loop (no query; the previous turn as the query) and of the question, at 1,000 / 2,000 / 4,000
tokens. "carried" is the share of evidence the window misses verbatim that a summary in it
quotes a sentence of.

The engine before runs from a git worktree of `LT_METERING_BEFORE` (default: the last commit
before engine version 4) in the same run, with this file copied in, so both sides run the same
measurement. `python -m bench.summary_metering` prints the section.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from bench.common import LOCOMO, ROOT, Section, code_state

__all__ = ["run"]

BEFORE = os.environ.get("LT_METERING_BEFORE", "3e2335c")
BUDGETS = (1000, 2000, 4000)
WINDOWS = {"none": "agent loop, no query", "previous": "agent loop, previous turn as query",
           "question": "the question as query"}


def _one(conv: Any) -> dict[str, Any]:
    from bench.quality_engine import Variant, replayed_window, window_for
    from bench.quality_store import score
    from memory.compaction import ENGINE_VERSION
    from memory.tokens import default_counter

    state = replayed_window(conv)
    counter = default_counter()
    rows: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for q in conv.questions:
        for budget in BUDGETS:
            for query in WINDOWS:
                shown, body, _, quoted = window_for(conv, q, budget, Variant(query, query=query),
                                                    state)
                missed = [e for e in q.evidence if e not in shown
                          and conv.messages[conv.seq[e]].content not in body]
                rows[f"{query}/{budget}"].append(
                    (score(conv, q, shown, body), sum(e in quoted for e in missed)
                     / len(q.evidence)))
    return {"engine": ENGINE_VERSION, "rows": rows, "summaries": len(state.summaries),
            "lines": sum(len(s.content.splitlines()) for s in state.summaries),
            "tokens": sum(counter.count(s.content) for s in state.summaries)}


def measure() -> dict[str, Any]:
    """This tree's engine on every conversation (UUID ids), conversations in parallel."""
    from bench.quality_store import load

    convs = load(date=True, uuid_ids=True)
    with ProcessPoolExecutor(min(len(convs), os.cpu_count() or 1),
                             mp_context=multiprocessing.get_context("spawn")) as pool:
        parts = list(pool.map(_one, convs))
    rows: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for part in parts:
        for key, values in part["rows"].items():
            rows[key].extend(values)
    return {"engine": parts[0]["engine"], "summaries": sum(p["summaries"] for p in parts),
            "lines": sum(p["lines"] for p in parts), "tokens": sum(p["tokens"] for p in parts),
            "recall": {k: statistics.fmean(r for r, _ in v) for k, v in rows.items()},
            "carried": {k: statistics.fmean(c for _, c in v) for k, v in rows.items()}}


def measure_before(ref: str) -> dict[str, Any]:
    """`measure()` in a git worktree of `ref`, with this file copied in."""
    with tempfile.TemporaryDirectory(prefix="lt-metering-") as tmp:
        tree = Path(tmp) / "tree"
        subprocess.run(["git", "worktree", "add", "--detach", "-q", str(tree), ref], cwd=ROOT,
                       check=True)
        try:
            shutil.copy(__file__, tree / "bench" / "summary_metering.py")
            out = subprocess.run([sys.executable, "-m", "bench.summary_metering", "--json"],
                                 cwd=tree, capture_output=True, text=True,
                                 env={**os.environ, "LONGTHREAD_LOCOMO": str(LOCOMO.resolve())})
            if out.returncode:
                raise RuntimeError(f"the engine at {ref} failed: {out.stderr[-2000:]}")
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT,
                           check=False)
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def run() -> tuple[Section, dict[str, Any]]:
    before, after = measure_before(BEFORE), measure()
    lines = ["| window | budget | recall before | recall now | carried before | carried now |",
             "|---|---|---|---|---|---|"]
    for query, name in WINDOWS.items():
        for budget in BUDGETS:
            key = f"{query}/{budget}"
            lines.append(f"| {name} | {budget:,} | {before['recall'][key]:.4f} | "
                         f"{after['recall'][key]:.4f} | {before['carried'][key]:.4f} | "
                         f"**{after['carried'][key]:.4f}** |")
    markdown = (
        f"LoCoMo dev, categories 1–4, UUID turn ids, one message per append. Before: "
        f"`{before['engine']}` at {BEFORE}; now: `{after['engine']}` at {code_state()}. "
        f"Stored summaries at the end: {before['summaries']} holding {before['lines']} lines "
        f"({before['tokens']:,} tokens with whole ids) before, {after['summaries']} holding "
        f"**{after['lines']} lines** ({after['tokens']:,} tokens) now.\n\n"
        + "\n".join(lines) + "\n")
    return Section("Summaries metered as a window shows them (engine version 4)", markdown), {
        "before": before, "after": after}


if __name__ == "__main__":
    if "--json" in sys.argv:
        print(json.dumps(measure()))
    else:
        print(run()[0].markdown)
