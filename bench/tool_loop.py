"""An agent's tool loop: how much of it a window shows, with and without diffs (assembly 13).

Synthetic, seeded, and built here rather than taken from a user's run: 300 steps of a coding
agent, each step one tool call of four kinds: `list_files` (a listing of ~120 files whose sizes
change a few at a time, with a scratch file renamed each time), `read_file` (one of six files,
a line of it edited between reads), `run_tests` (a log of ~80 lines whose failures move)
and `edit_file` (a one-word result). Every step's result holds one marker line that no other
step's holds (no marker outlives its step's result), so "is step N's evidence in the
window" has an exact answer: its marker line is shown verbatim, in a whole result or as a `+`
line of a diff.

Both versions are assembled from the same window through `assemble_from_window` (what serving
and replay run), idle (no query), with the heuristic counter. Reported per budget: the steps
whose evidence is in the window, tool results shown (whole / as diffs), tokens used, and the
assembly's median time. Every diff is checked to rebuild its result exactly from the result
its header points at. `python -m bench.tool_loop` prints the section.
"""

from __future__ import annotations

import random
import statistics
import time

from bench.common import Section, code_state
from memory.compaction import WindowState
from memory.delta import DIFF_PREFIX, archived_id, rebuild_diffs
from memory.models import ContextWindow, Message, ToolCall
from memory.tokens import HeuristicCounter
from memory.window import assemble_from_window

__all__ = ["run"]

STEPS = 300
BUDGETS = (2_000, 4_000, 8_000, 16_000, 32_000)
TIMED_RUNS = 5


class _Loop:
    """The world the agent works on; each step changes it a little and returns a result."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.sizes = {f"src/app/mod_{n:03}.py": self.rng.randint(200, 9000) for n in range(120)}
        self.files = {f"src/app/core_{n}.py": [f"    value_{n}_{k} = compute({k}, {n})"
                                               for k in range(90)] for n in range(6)}
        self.failing = set(self.rng.sample(range(80), 6))
        self.scratch = ""  # the listing's one scratch file, renamed at every listing
        self.edited: dict[str, tuple[int, str]] = {}  # file → (line, its text before the edit)

    def step(self, n: int) -> tuple[str, str, str]:
        """(tool name, result, this step's marker line)."""
        kind = ("list_files", "read_file", "run_tests", "edit_file")[n % 4]
        marker = f"step-{n}-{self.rng.getrandbits(40):010x}"
        if kind == "list_files":
            for name in self.rng.sample(sorted(self.sizes), 2):
                self.sizes[name] += self.rng.randint(1, 400)
            self.sizes.pop(self.scratch, None)
            self.scratch = f"src/app/{marker}.py"
            self.sizes[self.scratch] = 120
            body = "".join(f"-rw-r--r-- 1 agent staff {size:>7} {name}\n"
                           for name, size in sorted(self.sizes.items()))
            return kind, body, f"-rw-r--r-- 1 agent staff     120 src/app/{marker}.py"
        if kind == "read_file":
            name = sorted(self.files)[n // 4 % len(self.files)]
            lines = self.files[name]
            if name in self.edited:  # the previous read's edit is undone: one marker a file
                at, text = self.edited[name]
                lines[at] = text
            at = self.rng.randrange(len(lines))
            self.edited[name] = (at, lines[at])
            lines[at] = f"    # {marker}: edited"
            return kind, f"# {name}\n" + "\n".join(lines) + "\n", f"    # {marker}: edited"
        if kind == "run_tests":
            self.failing ^= {self.rng.randrange(80)}
            lines = [f"tests/test_app.py::test_case_{k:02} "
                     + ("FAILED" if k in self.failing else "PASSED") for k in range(80)]
            lines.append(f"== run {marker}: {len(self.failing)} failed ==")
            return kind, "\n".join(lines) + "\n", lines[-1]
        return kind, f"ok ({marker})", f"ok ({marker})"


def session(seed: int = 7) -> tuple[list[Message], dict[int, str]]:
    loop = _Loop(seed)
    messages = [Message(id="sys", role="system", content="You are a coding agent."),
                Message(id="task", role="user", content="Make refunds idempotent.")]
    markers: dict[int, str] = {}
    for n in range(STEPS):
        kind, body, marker = loop.step(n)
        call = ToolCall(id=f"call_{n}", name=kind, arguments=f'{{"step": {n}}}')
        messages += [Message(id=f"a{n}", role="assistant", tool_calls=(call,)),
                     Message(id=f"t{n}", role="tool", tool_call_id=call.id, content=body)]
        markers[n] = marker
    return messages, markers


def _check_diffs(window: ContextWindow, originals: dict[str, Message]) -> int:
    """Every diff rebuilds its result from the next result of its tool shown whole (as its
    header says); how many there are."""
    rebuilt = rebuild_diffs(window.messages)
    for i, text in rebuilt.items():
        ident = archived_id(window.messages[i].content)
        assert text == originals[ident].content, ident
    return len(rebuilt)


def _evidence(window: ContextWindow, markers: dict[int, str]) -> int:
    shown = set()
    for m in window.messages:
        lines = m.content.split("\n")
        if m.content.startswith(DIFF_PREFIX):
            lines = [line[1:] for line in lines if line.startswith("+")]
        shown.update(lines)
    return sum(1 for marker in markers.values() if marker in shown)


def run() -> Section:
    messages, markers = session()
    originals = {m.id: m for m in messages}

    state = WindowState(messages=tuple(messages))
    counter = HeuristicCounter()
    rows = []
    for budget in BUDGETS:
        cells = []
        for version in (12, 13):
            seconds = []
            for _ in range(TIMED_RUNS):
                started = time.perf_counter()
                window = assemble_from_window(state, max_tokens=budget, version=version,
                                              counter=counter)
                seconds.append(time.perf_counter() - started)
            diffs = _check_diffs(window, originals)
            results = sum(1 for m in window.messages if m.role == "tool")
            cells.append((_evidence(window, markers), results, diffs, window.tokens,
                          statistics.median(seconds) * 1000))
        (e12, r12, _, t12, s12), (e13, r13, d13, t13, s13) = cells
        rows.append(f"| {budget:,} | {e12} | {e13} ({e13 / max(e12, 1):.1f}×) | {r12} | "
                    f"{r13} ({d13} as diffs) | {t12:,} | {t13:,} | {s12:.1f} | {s13:.1f} |")
    table = "\n".join([
        "| budget | steps in the window, v12 | v13 | tool results, v12 | v13 | tokens, v12 | "
        "v13 | assembly ms, v12 | v13 |", "|---|---|---|---|---|---|---|---|---|", *rows])
    intro = (__doc__ or "").split("\n\n")[1:3]
    return Section("An agent's tool loop: repeated results as diffs (assembly 13, issue 12)",
                   f"Code: {code_state()}. " + " ".join(p.replace("\n", " ") for p in intro)
                   + f" {STEPS} steps; medians of {TIMED_RUNS} assemblies.\n\n{table}\n")


if __name__ == "__main__":
    print(run().markdown)
