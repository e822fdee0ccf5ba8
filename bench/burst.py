"""Bursts (issue 11): 10,000 messages appended as fast as one client can.

One client appends 10,000 LoCoMo turns (UUID ids) in sequential batches of 500 to a fresh
session with the default policy (8,000-token context window) while a second task keeps
calling context() with budgets of 500, 2,000 and 8,000 tokens. Checked:
- the served window never exceeds its budget (the reported tokens, and a recount of the
  served messages with the same counter);
- settle() (stored, embedded and compacted) completes within 10,000 ÷ ingest rate + 30 s.
  Two readings of "ingest rate" are reported: the client's append rate during the burst, and
  the sustained rate of the whole pipeline (appended to settled, embedding included) measured
  on 1,000 messages in the same run just before;
- the window (`stats().window_tokens`) is back under the policy's context window within 30 s
  of the last append, embedded or not.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from bench.common import Section
from bench.harness import bench_stack, embedder_name, load, log
from longthread.client import Conversation
from longthread.locomo import load_samples
from memory.policy import CompactionPolicy
from memory.tokens import default_counter

__all__ = ["run"]

TOTAL = int(os.environ.get("LT_BURST_MESSAGES", "10000"))
BATCH = int(os.environ.get("LT_BURST_BATCH", "500"))
SAMPLE = 1000
BUDGETS = (500, 2000, 8000)
SLACK = 30.0
TENANT = "burst"


@dataclass
class Watch:
    served: list[tuple[int, int, int]] = field(default_factory=list)  # budget, tokens, recount
    context_ms: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    peak_window: int = 0


def _messages(texts: list[str], start: int, n: int) -> list[dict[str, Any]]:
    return [{"id": str(uuid.uuid4()), "role": "user" if i % 2 == 0 else "assistant",
             "content": texts[i % len(texts)]} for i in range(start, start + n)]


async def _watch(conv: Conversation, questions: list[str], stop: asyncio.Event,
                 out: Watch) -> None:
    counter = default_counter()
    n = 0
    while not stop.is_set():
        budget = BUDGETS[n % len(BUDGETS)]
        try:
            t0 = time.perf_counter()
            ctx = await conv.context(questions[n % len(questions)], max_tokens=budget)
            out.context_ms.append((time.perf_counter() - t0) * 1000)
            recount = sum(counter.count_message(m.role, m.content) for m in ctx.messages)
            out.served.append((budget, ctx.tokens, recount))
            out.peak_window = max(out.peak_window, (await conv.stats()).window_tokens)
        except Exception as exc:  # counted and reported, never hidden
            out.errors.append(f"{type(exc).__name__}: {exc}"[:200])
        n += 1
        await asyncio.sleep(0.05)


async def _sustained_rate(conv: Conversation, texts: list[str]) -> float:
    """Messages per second from the first append to settled, embedding included."""
    t0 = time.perf_counter()
    for start in range(0, SAMPLE, 100):
        await conv.append_many(_messages(texts, start, 100))
    await conv.settle(timeout=900)
    return SAMPLE / (time.perf_counter() - t0)


async def run() -> tuple[Section, dict[str, Any]]:
    started = time.perf_counter()
    samples = load_samples()
    texts = [m["content"] for s in samples for m in s.messages]
    questions = [q["question"] for s in samples for q in s.questions]
    policy = CompactionPolicy()
    data: dict[str, Any] = {"load_start": load()}
    async with bench_stack(policy) as bench:
        data["embedder"] = embedder_name(bench.embedder)
        sample = await bench.lt.conversation("sustained", tenant=TENANT)
        data["sustained_per_s"] = await _sustained_rate(sample, texts)
        log("burst", f"sustained rate {data['sustained_per_s']:.0f}/s; bursting")
        conv = await bench.lt.conversation("burst", tenant=TENANT)
        watch = Watch()
        stop = asyncio.Event()
        watcher = asyncio.create_task(_watch(conv, questions, stop, watch))
        t0 = time.perf_counter()
        for start in range(0, TOTAL, BATCH):
            await conv.append_many(_messages(texts, start, min(BATCH, TOTAL - start)))
        appended = time.perf_counter() - t0
        data["load_appended"] = load()
        log("burst", f"appended in {appended:.1f} s")
        # The window back under the policy (polled), then settle().
        window_s: float | None = None
        while time.perf_counter() - t0 - appended < 600:
            stats = await conv.stats()
            if stats.window_tokens <= policy.context_window:
                window_s = time.perf_counter() - t0 - appended
                break
            await asyncio.sleep(0.25)
        try:
            settled = await conv.settle(timeout=3600)
            settle_s: float | None = time.perf_counter() - t0
            data["settled_stats"] = settled.model_dump()
        except TimeoutError:
            settle_s = None
        stop.set()
        await watcher
        data["count"] = await bench.store.count(TENANT, "burst")
        data["ledger"] = len(await bench.store.ledger(TENANT, "burst"))
    data.update(appended_s=appended, window_s=window_s, settle_s=settle_s, watch=watch,
                seconds=time.perf_counter() - started, load_end=load())
    return _report(data, policy), data


def _verdict(ok: bool) -> str:
    return "pass" if ok else "**FAIL**"


def _report(d: dict[str, Any], policy: CompactionPolicy) -> Section:
    w: Watch = d["watch"]
    over = [(b, t, r) for b, t, r in w.served if t > b or r > b]
    worst = max((max(t, r) / b for b, t, r in w.served), default=0.0)
    client_rate = TOTAL / d["appended_s"]
    deadline_client = TOTAL / client_rate + SLACK
    deadline_full = TOTAL / d["sustained_per_s"] + SLACK
    settle_s = d["settle_s"]
    window_s = d["window_s"]
    ms = sorted(w.context_ms)
    p50 = ms[len(ms) // 2] if ms else float("nan")
    lines = [
        f"{TOTAL:,} messages from one client in sequential batches of {BATCH}, to a fresh session "
        f"(policy context window {policy.context_window:,}); {len(w.served)} context() calls "
        f"during the burst and until settled (budgets {', '.join(map(str, BUDGETS))}), "
        f"p50 {p50:.0f} ms. Embedder in the worker and the client: {d['embedder']}. "
        f"Bench took {d['seconds'] / 60:.1f} min; load average "
        f"{d['load_start']} at the start, {d['load_appended']} after the appends, "
        f"{d['load_end']} at the end.\n",
        f"- Appends: {d['appended_s']:.1f} s = **{client_rate:.0f} messages/s** from the client. "
        f"Sustained rate of the whole pipeline (1,000 messages appended → settled, embedding "
        f"included, same run): **{d['sustained_per_s']:.0f} messages/s**. Stored: "
        f"{d['count']:,}; ledger records: {d['ledger']}.",
        f"- Served window within its budget: {_verdict(not over and not w.errors)} — "
        f"{len(over)} over budget, largest served/budget {worst:.3f}, {len(w.errors)} errors"
        + (f" (first: {w.errors[0]})" if w.errors else "") + f"; peak `window_tokens` seen "
        f"{w.peak_window:,}.",
        "- Window back under the context window: "
        + (f"{window_s:.1f} s after the last append (target ≤ {SLACK:.0f} s): "
           f"{_verdict(window_s <= SLACK)}." if window_s is not None
           else "**not within 600 s: FAIL**."),
    ]
    if settle_s is None:
        lines.append("- settle(): **did not complete within an hour: FAIL**.")
    else:
        lines.append(
            f"- settle() completed {settle_s:.1f} s after the first append. Against the "
            f"client's append rate: deadline {deadline_client:.1f} s → "
            f"{_verdict(settle_s <= deadline_client)}. Against the sustained pipeline rate: "
            f"deadline {deadline_full:.1f} s → {_verdict(settle_s <= deadline_full)}.")
    return Section("Bursts (issue 11)", "\n".join(lines) + "\n")


if __name__ == "__main__":
    print(asyncio.run(run())[0].markdown)
