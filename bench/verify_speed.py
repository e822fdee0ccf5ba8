"""`longthread verify`: every served context rebuilt, before and after reading the archive once.

Before, each served context was rebuilt from fresh reads of every message before its turn and
the ledger up to it (`longthread.audit.rebuild` without `archived`, kept as the replay path),
so a session served once every few turns cost its length times its context count in reads.
After, `verify_session` reads the messages and the ledger once and rebuilds every context
from them (`Archived`). Both run here on the same sessions in one embedded Postgres: short
synthetic turns, one context served every 10 turns (no query: the window and the hierarchy),
its digest recorded from the rebuild, so both sides must also agree on every digest.
Medians of 3 runs. `python -m bench.verify_speed` prints the section.

Those sessions never compact, so every window is the whole session and the fold has nothing to
do. A second table times the fold alone (pure, no database) on a library-mode session that
compacts (a 4,000-token policy), a context every 10 turns: before, each context's window folded
from the start (`fold_ledger` over its turns, as `verify` did until session 32); after, one
running fold (`memory.fold.Archived.window_at`). Both must give the same windows.
"""

from __future__ import annotations

import asyncio
import statistics
import time

from bench.common import Section, bench_store, code_state
from longthread.audit import Archived, rebuild
from longthread.verify import verify_session
from memory.audit import ServedContext, window_digest
from memory.compaction import WindowState
from memory.fold import fold_ledger
from memory.models import Message
from memory.policy import CompactionPolicy
from memory.session import Session
from memory.store.store import Store
from memory.window import by_reference

__all__ = ["run"]

SIZES = (1_000, 3_000)
FOLD_SIZES = (2_000, 5_000)
EVERY = 10  # turns between served contexts
TENANT = "bench-verify"


async def _session(store: Store, turns: int) -> tuple[str, list[ServedContext]]:
    session = f"verify-{turns}"
    messages = [Message(id=f"m{i}", role=("user", "assistant")[i % 2],
                        content=f"Turn {i}: the parcel {4700 + i} is at depot {i % 97}.")
                for i in range(turns)]
    for start in range(0, turns, 500):
        await store.append_messages(TENANT, session, messages[start:start + 500])
    archived = Archived(await store.all_with_seq(TENANT, session), [])
    served = []
    for turn in range(EVERY, turns + 1, EVERY):
        context = ServedContext(seq=0, turn=turn, query=None, max_tokens=2000, tokens=0,
                                source_ids=(), digest="", ledger_seq=0, shares=None,
                                assembly_version=18)
        window = await rebuild(store, TENANT, session, context, archived)
        served.append(await store.record_served(TENANT, session, context.model_copy(
            update={"digest": window_digest(window), "tokens": window.tokens})))
    return session, served


async def _before(store: Store, session: str, served: list[ServedContext]) -> int:
    """verify's loop before: each context rebuilt from its own reads."""
    matched = 0
    for context in served:
        window = await rebuild(store, TENANT, session, context)
        matched += window_digest(window) == context.digest
    return matched


async def _measure() -> list[tuple[int, int, float, float, int, int]]:
    rows = []
    async with bench_store() as store:
        for turns in SIZES:
            session, served = await _session(store, turns)
            before, after, matched_before, matched_after = [], [], 0, 0
            for _ in range(3):
                started = time.perf_counter()
                matched_before = await _before(store, session, served)
                before.append(time.perf_counter() - started)
                started = time.perf_counter()
                report = await verify_session(store, TENANT, session)
                after.append(time.perf_counter() - started)
                matched_after = report.served - len(report.findings)
            rows.append((turns, len(served), statistics.median(before),
                         statistics.median(after), matched_before, matched_after))
    return rows


def _turn(i: int) -> Message:
    return Message(id=f"m{i}", role=("user", "assistant")[i % 2],
                   content=f"Turn {i}: the parcel {4700 + i} is at depot {i % 97}.")


def _folds() -> list[tuple[int, int, int, float, float, bool]]:
    rows = []
    for turns in FOLD_SIZES:
        session = Session("fold", policy=CompactionPolicy(context_window=4000))
        points = []
        for i in range(turns):
            session.add_messages([_turn(i)])
            if i % EVERY == EVERY - 1:
                points.append((len(session.messages), len(session.ledger)))
        messages, ledger = session.messages, session.ledger
        before, after = [], []
        old: list[WindowState] = []
        new: list[WindowState] = []
        for _ in range(3):
            started = time.perf_counter()
            old = [fold_ledger([by_reference(m) for m in messages[:turn]], ledger[:records])
                   for turn, records in points]
            before.append(time.perf_counter() - started)
            started = time.perf_counter()
            archived = Archived(list(enumerate(messages)), ledger)
            new = [archived.window_at(turn, records) for turn, records in points]
            after.append(time.perf_counter() - started)
        rows.append((turns, len(ledger), len(points), statistics.median(before),
                     statistics.median(after), old == new))
    return rows


def run() -> Section:
    rows = asyncio.run(_measure())
    lines = [f"_{code_state()}_", "",
             "| turns | served contexts | before (each rebuilt from its own reads) | after "
             "(`verify`, archive read once) | ratio | digests matching, before / after |",
             "|---|---|---|---|---|---|"]
    for turns, n, before, after, ok_before, ok_after in rows:
        lines.append(f"| {turns:,} | {n:,} | {before:.2f} s | {after:.2f} s | "
                     f"{before / after:.1f}× | {ok_before} / {ok_after} of {n} |")
    lines += ["", "The fold alone, on a session that compacts:", "",
              "| turns | ledger records | contexts | before (each folded from the start) | "
              "after (one running fold) | ratio | same windows |", "|---|---|---|---|---|---|---|"]
    for turns, records, n, before, after, same in _folds():
        lines.append(f"| {turns:,} | {records} | {n:,} | {before:.2f} s | {after:.3f} s | "
                     f"{before / after:.0f}× | {'yes' if same else 'NO'} |")
    return Section("verify: rebuilding every served context", "\n".join(lines))


if __name__ == "__main__":
    print(run().markdown)
