"""`replay --at N` folds the ledger over the session's first N turns: before and after.

Before, every turn was in the window from the start, so each of the L records cost the whole
session (N x L); after (`longthread.audit.fold_ledger`), a message joins when the first record
that could cover it comes up, so a record costs about the window. Both run here on the same
synthetic sessions: short messages, archive-only records that each take the oldest 100 turns
and leave 500 in the window (a session's size and its record count are what matter to the
cost; summaries add a few objects per record to either side). The baseline is the old code,
kept here verbatim. Medians of 3 runs; the baseline is run once above 20,000 turns.
`python -m bench.replay_fold` prints the section.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence

from bench.common import Section, code_state
from longthread.audit import fold_ledger
from memory.compaction import WindowState, apply_record
from memory.models import CompactionRecord, Message

__all__ = ["run"]

SIZES = (10_000, 20_000, 100_000)
PER_RECORD = 100
WINDOW = 500


def _whole_fold(messages: Sequence[Message], records: Sequence[CompactionRecord]
                ) -> WindowState:
    """The fold before this change (longthread/audit.py at 1648d25)."""
    order = {m.id: n for n, m in enumerate(messages)}
    shown = {m.id: m for m in messages}
    state = WindowState(messages=tuple(messages))
    for record in records:
        state = apply_record(state, record, originals=shown, order=order)
    return state


def _session(turns: int) -> tuple[list[Message], list[CompactionRecord]]:
    messages = [Message(id=f"m{i}", role=("user", "assistant")[i % 2],
                        content=f"Turn {i}: the parcel is at depot {i % 97}.")
                for i in range(turns)]
    records = [CompactionRecord(
        id=f"c{k + 1}", seq=k, level="light", action="archive_oldest", reason="synthetic",
        covered_ids=tuple(m.id for m in messages[k * PER_RECORD:(k + 1) * PER_RECORD]),
        covered_hash="-", strategy="archive-only", tokens_before=1, tokens_after=1)
        for k in range((turns - WINDOW) // PER_RECORD)]
    return messages, records


def _timed(fold: Callable[[Sequence[Message], Sequence[CompactionRecord]], WindowState],
           messages: list[Message], records: list[CompactionRecord], runs: int
           ) -> tuple[float, WindowState]:
    seconds, state = [], WindowState()
    for _ in range(runs):
        started = time.perf_counter()
        state = fold(messages, records)
        seconds.append(time.perf_counter() - started)
    return statistics.median(seconds), state


def run() -> Section:
    rows = []
    for turns in SIZES:
        messages, records = _session(turns)
        after, folded = _timed(fold_ledger, messages, records, 3)
        before, whole = _timed(_whole_fold, messages, records, 3 if turns <= 20_000 else 1)
        assert folded == whole, "the two folds disagree"
        rows.append(f"| {turns:,} | {len(records):,} | {before:.2f} s | {after * 1000:.0f} ms "
                    f"| {before / after:.0f}× | {len(folded.messages)} |")
    table = "\n".join(["| turns | records | before: whole fold | after: `fold_ledger` | "
                       "ratio | messages left in the window |", "|---|---|---|---|---|---|",
                       *rows])
    return Section("replay --at N: the ledger fold (not an issue target)",
                   f"Code: {code_state()}. " + (__doc__ or "").split("\n\n")[1].replace(
                       "\n", " ") + f"\n\n{table}\n")


if __name__ == "__main__":
    print(run().markdown)
