"""`longthread demo`: the main job, on an embedded stack of its own, with no keys needed.

It replays a long real conversation (LoCoMo, when its file sits beside the checkout; else a
bundled synthetic multi-day support ticket) through one durable session, shows compactions
as they happen, then the final numbers, three retrieval questions and the ledger.
"""

from __future__ import annotations

import asyncio
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.rule import Rule

from longthread.client import Longthread
from longthread.locomo import default_path, load_samples
from longthread.settings import Settings
from longthread.views import event_line, ledger_table, print_window, stats_table
from memory.policy import CompactionPolicy
from worker.dev import embedded_stack
from worker.main import connect_client, run_worker
from worker.stack import free_port

__all__ = ["run_demo", "synthetic_ticket"]

FACTS = [
    ("Dana", "Our checkout service returns HTTP 502 since the deploy of release 4.2.1."),
    ("Sam", "I see the 502s too. The load balancer health check hits /healthz every 5 s."),
    ("Dana", "Customer ACME-77 lost 14 orders on Monday. They want a refund of 1,240 EUR."),
    ("Sam", "We decided to roll back to 4.2.0 tonight at 22:00 UTC."),
    ("Dana", "The rollback worked, but the cache hit rate dropped to 61%."),
    ("Sam", "Root cause: the connection pool was capped at 8 in 4.2.1, not 64."),
    ("Dana", "Action item: Priya will add a canary stage before Friday."),
    ("Sam", "Refund of 1,240 EUR to ACME-77 approved by finance on Wednesday."),
]
CHATTER = ["Thanks, looking into it.", "Any update on this?", "Still checking the logs.",
           "Ok, I will keep you posted.", "Got it.", "Let me ask the on-call engineer."]


def synthetic_ticket(days: int = 12, per_day: int = 30) -> list[dict[str, Any]]:
    """A deterministic multi-day ticket: a few facts that matter among a lot of chatter."""
    start = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    out: list[dict[str, Any]] = []
    for day in range(days):
        for i in range(per_day):
            n = len(out)
            speaker, text = (FACTS[(n // 37) % len(FACTS)] if n % 37 == 0
                             else (("Dana", "Sam")[n % 2], CHATTER[n % len(CHATTER)]))
            out.append({"id": f"t{n}", "role": "user" if speaker == "Dana" else "assistant",
                        "name": speaker, "content": f"{text} (day {day + 1})",
                        "created_at": (start + timedelta(days=day, minutes=7 * i)).isoformat()})
    return out


def _source() -> tuple[str, list[dict[str, Any]], list[str], list[list[str]]]:
    path = default_path()
    if path.exists():
        sample = load_samples(path)[0]
        picked = [q for q in sample.questions if q["category"] in (1, 2) and q["evidence"]][:3]
        return (f"LoCoMo conversation {sample.sample_id} ({' & '.join(sample.speakers)})",
                sample.messages, [q["question"] for q in picked],
                [list(q["evidence"]) for q in picked])
    return ("a synthetic 12-day support ticket", synthetic_ticket(),
            ["What was the root cause of the 502 errors?", "How much is ACME-77's refund?",
             "When was the rollback?"], [["t185"], ["t74", "t259"], ["t111"]])


async def run_demo(out: Console, data_dir: Path | None = None) -> None:
    root = data_dir or Path(tempfile.mkdtemp(prefix="longthread-demo-"))
    settings = Settings(data_dir=root, temporal_address=f"127.0.0.1:{free_port()}",
                        temporal_ui_port=free_port(), task_queue="longthread-demo")
    title, messages, questions, evidence = _source()
    out.print(Rule("longthread demo"))
    out.print(f"Replaying {title}: {len(messages)} messages, through one durable session.")
    out.print(f"Starting the embedded stack in {root} …")
    async with embedded_stack(settings) as info:
        out.print(f"Temporal web UI: {info.ui_url}")
        stop = asyncio.Event()
        worker = asyncio.create_task(
            run_worker(settings.model_copy(update={"database_url": info.database_url}), stop))
        try:
            live = settings.model_copy(update={"database_url": info.database_url})
            lt = Longthread(await connect_client(settings), live,
                            CompactionPolicy(context_window=4000, preserve_recent=8))
            conv = await lt.conversation("demo", tenant="demo")
            shown = 0
            for start in range(0, len(messages), 40):
                await conv.append_many(messages[start : start + 40])
                events = await conv.events()
                for event in events[shown:]:
                    if event.kind != "started":
                        out.print("  " + event_line(event), highlight=False)
                shown = len(events)
            async with asyncio.timeout(300):  # let background archiving and compaction settle
                quiet = 0
                while quiet < 3:
                    stats = await conv.stats()
                    quiet = 0 if stats.busy else quiet + 1
                    await asyncio.sleep(0.3)
                    for event in (await conv.events())[shown:]:
                        if event.kind != "started":
                            out.print("  " + event_line(event), highlight=False)
                        shown += 1
            out.print(stats_table(stats))
            for question, wanted in zip(questions, evidence, strict=True):
                out.print(Rule(f"Q: {question}"))
                window = await conv.context(question, max_tokens=1000)
                print_window(out, window)
                found = [e for e in wanted if e in window.source_ids]
                out.print(f"evidence turns {wanted}: {len(found)} of {len(wanted)} in the window")
            out.print(ledger_table(await conv.ledger()))
            await conv.close()
            await conv.handle.result()
            await lt.close()
        finally:
            stop.set()
            await worker
    out.print("Demo finished; the stack is stopped.")
