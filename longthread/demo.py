"""`longthread demo`: the main job, on an embedded stack of its own, with no keys needed.

It plays a conversation written for the project and shipped with it (`longthread/data/`: a
small team and their ops agent through a week-long production incident, with decisions,
corrected facts and tool calls) into one durable session, in small batches as a live agent
would, and shows each promise as it happens: compactions committing, the window at a budget
with a summary in it, retrieval finding the evidence for questions asked days later, `replay`
rebuilding a served window exactly, and an undo giving the originals back. It must look the
same on a fresh clone, so nothing here reads outside the package unless `--locomo` asks for
the LoCoMo conversation beside the checkout (CC BY-NC: read, never shipped).
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.rule import Rule

from longthread.audit import replay_at
from longthread.client import Conversation, Longthread
from longthread.data import Question, Script, bundled_script, locomo_script
from longthread.settings import Settings, acting_for
from longthread.views import (
    clip,
    day_heading,
    evidence_hits,
    indented,
    message_line,
    print_window,
    record_line,
    sections_line,
    stats_table,
)
from memory.policy import CompactionPolicy
from worker.dev import embedded_stack
from worker.main import connect_client, run_worker
from worker.stack import free_port
from worker.wiring import make_embedder

__all__ = ["run_demo"]

BATCH = 6  # messages per append: a few turns of a live agent, 50-odd workflow updates in all
BUDGET = 1500  # tokens of the windows the demo serves
# A small context window, so a few hundred turns compact several times and summaries fold up a
# level; the newest 8 messages always stay verbatim.
POLICY = CompactionPolicy(context_window=3000, preserve_recent=8)


def _private_runtime_dir(root: Path) -> None:
    """pgserver asks platformdirs for the user's runtime dir at import, and platformdirs warns
    (with a stack line) when XDG_RUNTIME_DIR is unset, as in containers and CI. Give it a
    private one: pgserver then keeps its lock in the temp dir exactly as before."""
    if not os.environ.get("XDG_RUNTIME_DIR"):
        runtime = root / "run"
        runtime.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.environ["XDG_RUNTIME_DIR"] = str(runtime)


async def run_demo(out: Console, data_dir: Path | None = None, locomo: bool = False) -> None:
    root = data_dir or Path(tempfile.mkdtemp(prefix="longthread-demo-"))
    _private_runtime_dir(root)
    script = locomo_script() if locomo else bundled_script()
    # Self-contained: its own ports and Postgres, whatever LONGTHREAD_* says; no audit page.
    settings = Settings(data_dir=root, temporal_address=f"127.0.0.1:{free_port()}",
                        temporal_ui_port=free_port(), audit_ui_port=0, database_url=None,
                        task_queue="longthread-demo")
    started = time.monotonic()
    out.print(Rule("longthread demo"))
    out.print(f"{script.title}: {len(script.messages)} messages over "
              f"{len({str(m.get('created_at') or '')[:10] for m in script.messages})} days, played "
              f"into one durable session whose context window is {POLICY.context_window:,} "
              "tokens.", highlight=False)
    out.print(f"Starting the embedded stack (Temporal, Postgres with pgvector) in {root} …",
              highlight=False)
    # The query embedder must be the worker's model (same settings, same choice); loading it
    # while the stack starts takes that wait off the first question.
    embedder = make_embedder(settings)
    warm = asyncio.create_task(embedder.embed(["warm up"]))
    try:
        async with embedded_stack(settings) as info:
            live = settings.model_copy(update={"database_url": info.database_url})
            stop = asyncio.Event()
            worker = asyncio.create_task(run_worker(live, stop))
            try:
                out.print(f"Temporal web UI: {info.ui_url} (each session is a workflow there)")
                await warm
                lt = Longthread(await connect_client(settings), live, POLICY, embedder=embedder)
                async with lt:
                    tour = asyncio.create_task(_tour(out, lt, script))
                    # A worker that dies would leave the tour retrying its updates for minutes.
                    await asyncio.wait([tour, worker], return_when=asyncio.FIRST_COMPLETED)
                    if not tour.done():
                        tour.cancel()
                    await tour
            finally:
                stop.set()
                await worker
    finally:
        warm.cancel()
    out.print(f"Demo finished in {time.monotonic() - started:.0f} s; the stack is stopped.")


async def _fresh_session(lt: Longthread, script: Script) -> str:
    """The session to play into: a data dir kept from an earlier run (`--data-dir`) already
    holds one, whose appends would all be skipped as duplicates; take the next free name."""
    taken = {s.session for s in await (await lt.store()).sessions(script.tenant)}
    return next(name for n in range(1, len(taken) + 2)
                if (name := script.session + (f"-{n}" if n > 1 else "")) not in taken)


async def _tour(out: Console, lt: Longthread, script: Script) -> None:
    conv = await lt.conversation(await _fresh_session(lt, script), tenant=script.tenant)
    checkpoint = await _play(out, conv, script)
    out.print(Rule("The window at a budget"))
    window = await conv.context(max_tokens=BUDGET)
    out.print(f"What the model would get now, within {BUDGET:,} tokens:")
    print_window(out, window, width=out.width - 24)
    summary = next(s for s in window.sections if s.name == "summary")
    out.print(f"summary section: {summary.tokens} tokens ({summary.items} summaries) standing "
              "in for the compacted turns" if summary.items else "summary section: 0 tokens: "
              "no summary fits this budget", highlight=False)
    last = await _questions(out, conv, script.questions)
    await _replays(out, lt, conv, [(checkpoint, script.checkpoint_label),
                                   (last, "the last question's window")])
    await _undo(out, lt, conv)
    await conv.close()  # ends the run; the session would resume from the store on next use
    await conv.handle.result()


async def _play(out: Console, conv: Conversation, script: Script) -> int:
    """Append in small batches, printing each day's opening line, the turns the questions
    will later need (★), and every compaction as it commits. Returns the checkpoint turn."""
    out.print(Rule(f"Appending, {BATCH} messages at a time, to {conv.tenant}/{conv.session}"))
    wanted = {i for q in script.questions for i in q.evidence}
    days = Counter(str(m.get("created_at") or "")[:10] for m in script.messages)
    shown, day, turn, checkpoint = 0, "", 0, 0
    started = time.monotonic()
    for start in range(0, len(script.messages), BATCH):
        batch = script.messages[start : start + BATCH]
        await conv.append_many(batch)
        for message in batch:
            first = (today := str(message.get("created_at") or "")[:10]) != day
            if first:
                day = today
                out.print(day_heading(day, days[day]), highlight=False, markup=False)
            if first or message["id"] in wanted:
                out.print(("    " if first else "  ★ ") + message_line(message, out.width - 5),
                          highlight=False, markup=False)
        turn += len(batch)
        shown = await _new_compactions(out, conv, shown)
        if not checkpoint and turn >= script.checkpoint:
            checkpoint = turn
            served = await conv.context(max_tokens=BUDGET)
            out.print(f"  ◆ served a {served.tokens:,}-token window after turn {turn} "
                      "(recorded; replayed at the end)", highlight=False)
    out.print(f"{turn} messages appended in {time.monotonic() - started:.1f} s "
              f"({-(-turn // BATCH)} appends); waiting for embedding and compaction to settle …")
    stats = await conv.settle()
    await _new_compactions(out, conv, shown)
    out.print(stats_table(stats))
    return checkpoint


async def _new_compactions(out: Console, conv: Conversation, shown: int) -> int:
    """Print the compactions committed since the last look, from the ledger's events."""
    events = [e for e in await conv.events() if e.kind != "started"]
    if len(events) > shown:
        records = {r.id: r for r in await conv.ledger()}
        for event in events[shown:]:
            record = records.get(event.record_id)
            text = (record_line(record) if record and event.kind == "completed"
                    else f"{event.record_id} {event.kind}: {event.error or event.reason}")
            out.print(f"  ⟳ {text}", highlight=False, markup=False)
    return len(events)


async def _questions(out: Console, conv: Conversation, questions: Sequence[Question]) -> int:
    """Ask each question at the budget; say which evidence turns reached the window, and how.
    Returns the turn the last window was served at, for replay."""
    out.print(Rule(f"Questions, each answered from a {BUDGET:,}-token window"))
    found = total = answered = 0
    for n, q in enumerate(questions, 1):
        window = await conv.context(q.question, max_tokens=BUDGET)
        out.print(f"[bold]Q{n}. {escape(q.question)}[/bold] [dim]({escape(q.kind)})[/dim]")
        indented(out, f"answer: {q.answer}", 4)
        indented(out, f"window: {sections_line(window)}", 4)
        hits = evidence_hits(window, q.evidence)
        for ident, section, line in hits:  # two lines at most: enough to see the answer
            indented(out, clip(f"✓ {section:<9} {line}", 2 * out.width - 16) if section
                 else f"✗ {ident} is not in the window", 4)
        present = sum(1 for _, section, _ in hits if section)
        found, total, answered = found + present, total + len(hits), answered + bool(present)
        stale = [i for i, section, _ in evidence_hits(window, q.superseded) if section]
        if stale:
            indented(out, f"↺ superseded {', '.join(stale)} also in the window, dated before the "
                 "correction", 4)
    out.print(f"evidence in the window: {found} of {total} turns; questions with evidence: "
              f"{answered} of {len(questions)}", highlight=False)
    return (await conv.stats()).messages


async def _replays(out: Console, lt: Longthread, conv: Conversation,
                   turns: Sequence[tuple[int, str]]) -> None:
    out.print(Rule("Replay: what did the model see at turn N?"))
    store = await lt.store()
    for turn, label in turns:
        result = await replay_at(store, conv.tenant, conv.session, turn)
        verdict = "MATCHES" if result.matches else "DIFFERS from"
        out.print(f"replay --at {turn} ({label}; ledger records in force: "
                  f"{result.served.ledger_seq}): {verdict} what was served "
                  f"(sha256 {result.served.digest[:16]}…)", highlight=False)


async def _undo(out: Console, lt: Longthread, conv: Conversation) -> None:
    """Undo the newest compaction and show its originals back in the window, verbatim."""
    out.print(Rule("Undo"))
    target = next((r for r in reversed(await conv.ledger())
                   if r.trigger != "undo" and r.summary is not None), None)
    if target is None:
        out.print("no compaction to undo")
        return
    before, summaries = await conv.window(), await conv.summaries()
    record = await conv.uncompact(target.id, actor=acting_for(lt.settings, "cli"))
    after, kept = await conv.window(), await conv.summaries()
    back = [i for i in target.covered_ids if i in {m.id for m in after}]
    originals = {m.id: m for m in await (await lt.store()).get_messages(
        conv.tenant, conv.session, back)}
    verbatim = sum(1 for m in after if m.id in originals and m == originals[m.id])
    left = ", ".join(record.removed_summary_ids) or "none"
    came = f"; the {len(record.restored_summaries)} it had folded came back" \
        if record.restored_summaries else ""
    out.print(f"undo {record.id} of {target.id}: {len(back)} of {len(target.covered_ids)} "
              f"covered messages ({target.covered_ids[0]} … {target.covered_ids[-1]}) are back "
              f"in the window, {verbatim} of them verbatim as archived. Summaries {left} left "
              f"it{came}.", highlight=False)
    out.print(f"window: {len(before)} messages + {len(summaries)} summaries, "
              f"{record.tokens_before:,} tokens → {len(after)} messages + {len(kept)} summaries, "
              f"{record.tokens_after:,} tokens", highlight=False)
    window = await conv.context(max_tokens=BUDGET)
    result = await replay_at(await lt.store(), conv.tenant, conv.session,
                             (await conv.stats()).messages)
    out.print(f"after the undo a {window.tokens:,}-token window was served; replay "
              f"{'MATCHES' if result.matches else 'DIFFERS from'} it (the undo is in the "
              f"ledger as {record.id}).", highlight=False)
