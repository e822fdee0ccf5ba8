"""What a summary keeps of a log or a ticket: the rare lines, or the boilerplate around them.

Session 30 (engine 13, assembly 18): a number said only in lines of a recurring form (a log
line's counter, a reply macro's order number) is weighed as a slot of that form, not as a rare
fact. Spans from `bench/salience_corpus.py` (seeded; each family's mix drawn per seed), each
rare line or planted fact with an identifier no other line has. Two measures, both engines run
here, each in its own interpreter (the baseline is the engine at BASELINE, taken from git):

- **Summary**: `extractive_summary` of the whole span at each budget: identifiers quoted.
- **Agent loop**: the span appended a message at a time to a `memory.Session` with a
  2,000-token context window (so it compacts many times), then one context of 1,000 tokens
  with no query: identifiers in its summary section (the older conversation it carries), and in
  the whole window.

`python -m bench.salience` prints the section.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.common import Section, code_state
from bench.library import ROOT, baseline_tree

__all__ = ["BASELINE", "run"]

BASELINE = "0e6eb07"  # main before session 30
SEEDS = 20
BUDGETS = (200, 500, 1_000)

PROBE = r"""
import json, sys
sys.path.insert(0, sys.argv[1])
import salience_corpus as corpus
from memory.extractive import extractive_summary
from memory.policy import CompactionPolicy
from memory.session import Session

seeds, budgets = int(sys.argv[2]), [int(b) for b in sys.argv[3].split(",")]
out = {}
for family in corpus.FAMILIES:
    rows = {"planted": 0, "summary": {str(b): 0 for b in budgets}, "carried": 0, "window": 0,
            "compactions": 0}
    for seed in range(seeds):
        messages, planted = corpus.span(family, seed)
        rows["planted"] += len(planted)
        for b in budgets:
            text = extractive_summary(messages, b).text
            rows["summary"][str(b)] += sum(1 for p in planted if p in text)
        session = Session(f"{family}-{seed}", policy=CompactionPolicy(context_window=2000))
        for m in messages:
            session.add_messages([m])
        window = session.get_context(max_tokens=1000)
        summary = "\n".join(m.content for m in window.messages if m.section == "summary")
        whole = "\n".join(m.content for m in window.messages)
        rows["carried"] += sum(1 for p in planted if p in summary)
        rows["window"] += sum(1 for p in planted if p in whole)
        rows["compactions"] += len(session.ledger)
    out[family] = rows
print(json.dumps(out))
"""

Result = dict[str, dict[str, Any]]


def _probe(tree: Path) -> Result:
    corpus = Path(__file__).resolve().parent
    out = subprocess.run([sys.executable, "-c", PROBE, str(corpus), str(SEEDS),
                          ",".join(map(str, BUDGETS))], check=True, capture_output=True,
                         text=True, cwd=tree,
                         env={"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin"})
    result: Result = json.loads(out.stdout)
    return result


def run() -> Section:
    with tempfile.TemporaryDirectory(prefix="lt-salience-baseline-") as folder:
        before = _probe(baseline_tree(Path(folder), BASELINE))
    after = _probe(ROOT)
    rows = []
    for family, now in after.items():
        was = before[family]
        cells = [f"{was['summary'][str(b)]} → {now['summary'][str(b)]}" for b in BUDGETS]
        rows.append(f"| {family} | {now['planted']} | " + " | ".join(cells)
                    + f" | {was['carried']} → {now['carried']} | {was['window']} → "
                    f"{now['window']} | {was['compactions']} → {now['compactions']} |")
    heads = " | ".join(f"summary of {b:,}" for b in BUDGETS)
    body = (
        f"Baseline: the engine at {BASELINE}; after: {code_state()}. Both measured in this "
        f"run, {SEEDS} seeds a family (`bench/salience_corpus.py`). Each cell counts planted "
        "identifiers (a rare log line's, or a fact only the ticket holds) quoted, baseline → "
        "after. Agent loop: a message an append into a 2,000-token context window, then a "
        "1,000-token context with no query; carried = in its summary section.\n\n"
        f"| family | planted | {heads} | loop: carried | loop: in window | compactions |\n"
        f"|---|---|{'---|' * len(BUDGETS)}---|---|---|\n" + "\n".join(rows) + "\n")
    return Section("What summaries keep of logs and tickets (rare lines among boilerplate)",
                   body)


if __name__ == "__main__":
    print(run().markdown)
