"""Library mode (`memory.Session`) as a session grows: before and after session 28's change.

Session 28's user test kept each user's chat in a `memory.Session` for months and found
`add_message` and `get_context` growing with the session (15.7 ms and 943 ms at 50,000
messages): each append rebuilt the set of tool call ids from every message, and each search
re-tokenized every message for BM25. The change keeps both incrementally
(`memory/session_archive.py`). Both versions run here, one size at a time, each in its own
interpreter on the same machine: the baseline is the engine at BASELINE, taken from git.
Sizes 1,000 / 10,000 / 20,000 messages of support chat, appended 100 at a time with automatic
compaction (context window 8,000 tokens); then medians of 200 single appends, 15 queried
`get_context(max_tokens=4000)` calls, 3 saves and 3 loads.
`python -m bench.library` prints the section.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile
import tempfile
from io import BytesIO
from pathlib import Path

from bench.common import Section, code_state

__all__ = ["BASELINE", "ROOT", "baseline_tree", "run"]

BASELINE = "0a5ebc3"  # main before the change
SIZES = (1_000, 10_000, 20_000)
ROOT = Path(__file__).resolve().parents[1]

PROBE = r"""
import json, statistics, sys, tempfile, time
from pathlib import Path
from memory.policy import CompactionPolicy
from memory.session import Session

size = int(sys.argv[1])
session = Session("bench", policy=CompactionPolicy(context_window=8000))
def turn(n):
    return {"id": f"m{n}", "role": "user" if n % 2 else "assistant",
            "content": f"Turn {n}: order {n * 7} left depot {n % 13} for Leeds on day {n % 30}."}
started = time.perf_counter()
for start in range(0, size, 100):
    session.add_messages([turn(n) for n in range(start, min(size, start + 100))])
build = time.perf_counter() - started
def median_ms(call, times):
    spent = []
    for k in range(times):
        t0 = time.perf_counter(); call(k); spent.append((time.perf_counter() - t0) * 1000)
    return statistics.median(spent)
add = median_ms(lambda k: session.add_messages([turn(size + k)]), 200)
ctx = median_ms(lambda k: session.get_context(query=f"order {k * 91} depot", max_tokens=4000), 15)
with tempfile.TemporaryDirectory() as folder:
    path = Path(folder) / "s.json"
    save = median_ms(lambda k: session.save(path), 3)
    load = median_ms(lambda k: Session.load(path), 3)
    size_mb = path.stat().st_size / 1e6
print(json.dumps({"build_s": build, "add_ms": add, "context_ms": ctx, "save_ms": save,
                  "load_ms": load, "file_mb": size_mb}))
"""


def baseline_tree(folder: Path, commit: str = BASELINE) -> Path:
    """The engine at `commit`, unpacked from git into `folder` (memory/ is all library mode
    imports)."""
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", commit, "memory"],
                             check=True, capture_output=True).stdout
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(folder, filter="data")
    return folder


def _probe(tree: Path, size: int) -> dict[str, float]:
    out = subprocess.run([sys.executable, "-c", PROBE, str(size)], check=True,
                         capture_output=True, text=True, cwd=tree,
                         env={"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin"})
    result: dict[str, float] = json.loads(out.stdout)
    return result


def run() -> Section:
    rows = []
    with tempfile.TemporaryDirectory(prefix="lt-library-baseline-") as folder:
        baseline = baseline_tree(Path(folder))
        measured = [(size, _probe(baseline, size), _probe(ROOT, size)) for size in SIZES]
    for size, before, after in measured:
        rows.append(
            f"| {size:,} | {before['build_s']:.1f} → {after['build_s']:.1f} s "
            f"| {before['add_ms']:.2f} → {after['add_ms']:.2f} ms "
            f"| {before['context_ms']:.1f} → {after['context_ms']:.1f} ms "
            f"({after['context_ms'] / before['context_ms']:.2f}×) "
            f"| {before['save_ms']:.0f} → {after['save_ms']:.0f} ms "
            f"| {before['load_ms']:.0f} → {after['load_ms']:.0f} ms "
            f"| {after['file_mb']:.1f} MB |")
    body = (f"Baseline: the engine at {BASELINE}; after: {code_state()}. Each cell is "
            "baseline → after, medians, both measured in this run, one size at a time.\n\n"
            "| messages | build (100 a call) | add_message | get_context (query, 4,000) "
            "| save (atomic after) | load (checked after) | file |\n"
            "|---|---|---|---|---|---|---|\n" + "\n".join(rows) + "\n")
    return Section("Library mode as a session grows (memory.Session)", body)


if __name__ == "__main__":
    section = run()
    print(f"### {section.title}\n\n{section.markdown}")
