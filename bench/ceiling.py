"""A session without a ceiling (issue 11): up to 1,000,000 messages appended through the client.

One session; batches of 500; ids are 36-character UUIDs; contents are LoCoMo turns, cycled.
At each checkpoint (default 10k, 100k, 1M; `LT_CEILING_SIZES=2000,5000` for a quick check) it
records the append throughput so far, the workflow's stats, every continue-as-new input so far
(bytes, and the message count recorded in it) and each run's history (events, bytes).

After the last append it waits for compaction (the window back under the policy), then checks:
every message stored exactly once (count, distinct ids, a digest of the id set, seqs 0..n-1);
every run but the newest ended in continue-as-new, the newest is running and still answers
(a query, a context(), an append); no workflow task failed; and history per run against
Temporal's limits. Embedding is measured, not waited for: the local MiniLM needs hours for 1M
messages on 2 cores, so the report gives what was embedded while appending and the embedding
rate over `LT_CEILING_EMBED_SECONDS` (default 120) after the appends, with no appends running.

`LT_CEILING_SUGGEST_EVENTS` lowers the server's continue-as-new suggestion (events per run), so
continue-as-new also happens near small checkpoints; unset, the server's defaults apply.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import os
import time
import uuid
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from bench.common import Section, percentiles
from bench.harness import (
    Bench,
    NoopWorkflow,
    bench_stack,
    embedder_name,
    load,
    log,
    noop_workflow,
    timed,
)
from bench.history import EVENT_LIMIT, HISTORY_BYTES_LIMIT, RunHistory, runs
from longthread.client import Conversation
from longthread.locomo import load_samples
from memory.policy import CompactionPolicy
from memory.tokens import default_counter
from workflows.types import ConversationStats

__all__ = ["run", "sizes"]

T = TypeVar("T")

BATCH = 500
STATE_LIMIT = 64 * 1024
TENANT = "ceiling"
APPEND_TIMEOUT = float(os.environ.get("LT_CEILING_APPEND_TIMEOUT", "300"))
COMPACT_TIMEOUT = float(os.environ.get("LT_CEILING_COMPACT_TIMEOUT", "1800"))
DEADLINE = float(os.environ.get("LT_CEILING_DEADLINE", str(4 * 3600)))


def sizes() -> list[int]:
    raw = os.environ.get("LT_CEILING_SIZES", "10000,100000,1000000")
    return sorted(int(x) for x in raw.split(",") if x.strip())


@dataclass
class Checkpoint:
    messages: int
    append_seconds: float  # time spent in append_many calls so far
    wall_seconds: float  # since the first append, pauses for measuring excluded
    segment_latency: dict[str, float]
    embedded: int
    window_tokens: int
    ledger_head: int
    runs: int
    continued: list[tuple[int | None, int]]  # (next_seq in the input, bytes), every CAN so far
    max_run_events: int
    max_run_bytes: int
    load: str


@dataclass
class Outcome:
    checkpoints: list[Checkpoint] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)


def _messages(ids: list[str], texts: list[str], start: int) -> list[dict[str, Any]]:
    return [{"id": ids[i], "role": "user" if i % 2 == 0 else "assistant",
             "content": texts[i % len(texts)]} for i in range(start, start + BATCH)]


async def _history(bench: Bench, conv: Conversation) -> list[RunHistory]:
    return await runs(bench.client, conv.id)


async def _wait_compacted(conv: Conversation, policy: CompactionPolicy,
                          timeout: float) -> float:
    """Seconds until the window is back under the policy's context window and compaction
    has gone quiet (two reads a second apart with the same ledger head)."""
    t0 = time.perf_counter()
    last = -1
    while time.perf_counter() - t0 < timeout:
        try:
            stats = await conv.stats()
        except Exception:  # a wedged worker answers queries late; keep polling
            await asyncio.sleep(1.0)
            continue
        if stats.window_tokens <= policy.context_window and stats.ledger_head == last:
            return time.perf_counter() - t0
        last = stats.ledger_head
        await asyncio.sleep(1.0)
    raise TimeoutError(f"window still over the policy after {timeout:.0f} s")


async def _store_checks(bench: Bench, session: str, ids: list[str]) -> dict[str, Any]:
    async with bench.store.scoped(TENANT) as conn:
        cur = await conn.execute(
            "SELECT count(*) AS n, count(DISTINCT id) AS ids, count(DISTINCT seq) AS seqs,"
            " min(seq) AS lo, max(seq) AS hi, md5(string_agg(id, ',' ORDER BY id)) AS digest,"
            " count(*) FILTER (WHERE embedding IS NOT NULL) AS embedded"
            " FROM messages WHERE tenant = %s AND session = %s", (TENANT, session))
        row = await cur.fetchone()
        assert row is not None
        cur = await conn.execute(
            "SELECT pg_size_pretty(pg_database_size(current_database())) AS size")
        size = await cur.fetchone()
    async with bench.store.pool.connection() as conn:  # sizes are per table, not per tenant
        cur = await conn.execute(
            "SELECT relname, pg_total_relation_size(oid) AS bytes FROM pg_class WHERE relkind ="
            " 'r' AND relname IN ('messages', 'message_terms', 'window_versions', 'ledger')"
            " ORDER BY 2 DESC")
        tables = [(r["relname"], int(r["bytes"])) for r in await cur.fetchall()]
    expected = hashlib.md5(",".join(sorted(ids)).encode()).hexdigest()
    return {"count": int(row["n"]), "distinct": int(row["ids"]), "seqs": int(row["seqs"]),
            "lo": row["lo"], "hi": row["hi"], "ids_match": row["digest"] == expected,
            "embedded": int(row["embedded"]), "db_size": size["size"] if size else "?",
            "tables": tables}


async def _embedding_rate(conv: Conversation, seconds: float) -> tuple[int, float]:
    """Messages embedded per second over `seconds` with no appends running."""
    before = (await conv.stats()).embedded
    t0 = time.perf_counter()
    await asyncio.sleep(seconds)
    after = (await conv.stats()).embedded
    return after - before, (after - before) / (time.perf_counter() - t0)


def _log(text: str) -> None:
    log("ceiling", text)


async def run(targets: list[int] | None = None) -> tuple[Section, dict[str, Any]]:
    targets = targets or sizes()
    total = targets[-1]
    policy = CompactionPolicy()  # the default: an 8,000-token context window
    suggest = os.environ.get("LT_CEILING_SUGGEST_EVENTS")
    dynamic = {"limit.historyCount.suggestContinueAsNew": suggest} if suggest else {}
    embed_seconds = float(os.environ.get("LT_CEILING_EMBED_SECONDS", "120"))
    texts = [m["content"] for s in load_samples() for m in s.messages]
    ids = [str(uuid.uuid4()) for _ in range(total)]
    assert all(len(i) == 36 for i in ids[:10])
    out = Outcome()
    started = time.perf_counter()
    async with bench_stack(policy, dynamic_config=dynamic) as bench:
        async with noop_workflow(bench) as noop:
            base = [await timed(lambda: noop.execute_update(NoopWorkflow.noop))
                    for _ in range(50)]
        out.extra["embedder"] = embedder_name(bench.embedder)
        session = f"million-{uuid.uuid4()}"
        conv = await bench.lt.conversation(session, tenant=TENANT)
        append_s = paused = 0.0
        reported_duplicates = done = 0
        segment: list[float] = []
        t_first = time.perf_counter()
        for start in range(0, total, BATCH):
            batch = _messages(ids, texts, start)
            t0 = time.perf_counter()
            try:
                result = await asyncio.wait_for(conv.append_many(batch), APPEND_TIMEOUT)
            except TimeoutError:
                out.failures.append(f"append_many of messages {start:,}-{start + BATCH:,} did "
                                    f"not return within {APPEND_TIMEOUT:.0f} s")
                _log(out.failures[-1])
                break
            except Exception as exc:  # the client gave up: record it and check what is stored
                out.failures.append(
                    f"append_many of messages {start:,}-{start + BATCH:,} raised "
                    f"`{type(exc).__name__}: {exc}` after {time.perf_counter() - t0:.0f} s")
                _log(out.failures[-1])
                break
            elapsed = time.perf_counter() - t0
            append_s += elapsed
            segment.append(elapsed * 1000)
            # A local activity retried after its first attempt committed reports the batch as
            # duplicates; the store check below is what proves exactly-once.
            reported_duplicates += result.duplicates
            done = start + BATCH
            if done % 50_000 == 0 or done in targets:
                _log(f"{done:,} appended, {done / append_s:.0f}/s in append_many")
            if done in targets:
                t_pause = time.perf_counter()
                stats = await _stats(conv)
                history = await _history(bench, conv)
                out.checkpoints.append(Checkpoint(
                    messages=done, append_seconds=append_s,
                    wall_seconds=time.perf_counter() - t_first - paused,
                    segment_latency=percentiles(segment), embedded=stats.embedded,
                    window_tokens=stats.window_tokens, ledger_head=stats.ledger_head,
                    runs=stats.runs,
                    continued=[(r.continued_at, r.continued_input) for r in history
                               if r.continued_input is not None],
                    max_run_events=max(r.events for r in history),
                    max_run_bytes=max(r.bytes for r in history), load=load()))
                segment = []
                _dump(out.checkpoints[-1])
                paused += time.perf_counter() - t_pause
            if time.perf_counter() - t_first > DEADLINE:
                out.failures.append(f"stopped at {done:,} messages: the run passed its "
                                    f"{DEADLINE / 3600:.1f} h deadline (LT_CEILING_DEADLINE)")
                _log(out.failures[-1])
                break
        appended_at = time.perf_counter()
        out.extra["appended"] = done
        out.extra["reported_duplicates"] = reported_duplicates
        _log("appends done; waiting for compaction")
        try:
            compacted_after: float | None = await _wait_compacted(conv, policy,
                                                                  timeout=COMPACT_TIMEOUT)
        except TimeoutError as exc:
            compacted_after = None
            out.failures.append(str(exc))
        after_stats = await _safely(out, "stats() after the appends", conv.stats())
        out.extra["after_appends"] = {
            "compacted_after_s": compacted_after,
            "stats": after_stats.model_dump() if after_stats else {},
            "stored_and_compacted_s": None if compacted_after is None
            else appended_at - t_first - paused + compacted_after}
        _log("measuring embedding")
        out.extra["embedding"] = await _safely(
            out, "measuring embedding", _embedding_rate(conv, embed_seconds)) or (0, 0.0)
        _log("checking the store and the runs")
        out.extra["store"] = await _store_checks(bench, session, ids[:done])
        out.extra["answering"] = await _safely(out, "still answering",
                                               _still_answering(conv, out)) or {}
        out.extra["runs"] = await _history(bench, conv)
        final = await _safely(out, "final stats()", conv.stats())
        out.extra["final_stats"] = final.model_dump() if final else {}
    out.extra["noop"] = percentiles(base)
    out.extra["target"] = total
    out.extra["total_seconds"] = time.perf_counter() - started
    out.extra["suggest"] = suggest
    out.extra["embed_seconds"] = embed_seconds
    return _report(out, policy), {"checkpoints": out.checkpoints, "failures": out.failures,
                                  **out.extra}


def _dump(cp: Checkpoint) -> None:
    """Each checkpoint as one JSON line in LT_CEILING_DUMP (when set), so a run that dies or is
    stopped later still leaves what it measured."""
    path = os.environ.get("LT_CEILING_DUMP")
    if path:
        with open(path, "a") as f:
            f.write(json.dumps(dataclasses.asdict(cp)) + "\n")


async def _stats(conv: Conversation) -> ConversationStats:
    """stats(), retried: a busy worker can answer a query late."""
    for _ in range(10):
        try:
            return await conv.stats()
        except Exception:
            await asyncio.sleep(3.0)
    return await conv.stats()


async def _safely(out: Outcome, what: str, work: Awaitable[T]) -> T | None:
    """Await `work`; a failure is recorded in the report instead of losing the section."""
    try:
        return await work
    except Exception as exc:
        out.failures.append(f"{what}: `{type(exc).__name__}: {str(exc)[:300]}`")
        _log(out.failures[-1])
        return None


async def _still_answering(conv: Conversation, out: Outcome) -> dict[str, Any]:
    """A context() and one more append, each within a minute."""
    try:
        t0 = time.perf_counter()
        ctx = await asyncio.wait_for(
            conv.context("what did they say about the adoption agency?", 2000), 60)
        context_ms = (time.perf_counter() - t0) * 1000
        t0 = time.perf_counter()
        more = await asyncio.wait_for(conv.append_many(
            [{"id": str(uuid.uuid4()), "role": "user", "content": "Still there?"}]), 60)
        append_ms = (time.perf_counter() - t0) * 1000
    except TimeoutError:
        out.failures.append("the session did not answer a context() and an append within 60 s")
        return {}
    recount = sum(default_counter().count_message(m.role, m.content) for m in ctx.messages)
    return {"context_ms": context_ms, "context_tokens": ctx.tokens, "recount": recount,
            "sources": len(ctx.source_ids), "append_ms": append_ms,
            "appended": more.appended + more.duplicates}


def _kb(n: int) -> str:
    return f"{n / 1024:.1f} KB" if n >= 1024 else f"{n} B"


def _continued_near(cp: Checkpoint) -> str:
    """The last continue-as-new input at or before the checkpoint, and the largest so far."""
    if not cp.continued:
        return "none yet"
    sizes_ = [b for _, b in cp.continued]
    at, last = cp.continued[-1]
    return f"{_kb(last)} at {at:,} msgs; max {_kb(max(sizes_))} over {len(sizes_)}"


def _otherwise(runs_: list[RunHistory]) -> str:
    if not runs_:
        return ""
    return f", {len(runs_)} ended otherwise (" + "; ".join(
        f"{r.status}" + (f", {r.ended}" if r.ended else "") for r in runs_) + ")"


def _largest(hist: list[RunHistory]) -> str:
    """What the largest run held, and the activity it waited on longest: a run grows while
    something keeps it from continuing as new and appends keep landing."""
    big = max(hist, key=lambda r: r.bytes)
    waited = (f"its longest activity was {big.longest_activity[0]}, "
              f"{big.longest_activity[1]:.1f} s" if big.longest_activity else "no activity")
    slow = max((r.longest_activity for r in hist if r.longest_activity),
               key=lambda a: a[1], default=None)
    across = f"; longest in any run: {slow[0]}, {slow[1]:.1f} s" if slow else ""
    return (f"The largest run ({big.bytes / 2**20:.2f} MB) took {big.updates:,} updates; "
            f"{waited}{across}.")


def _report(out: Outcome, policy: CompactionPolicy) -> Section:
    x = out.extra
    lines = []
    for cp in out.checkpoints:
        lat = cp.segment_latency
        lines.append(
            f"| {cp.messages:,} | {cp.append_seconds:.0f} s "
            f"| {cp.messages / cp.append_seconds:.0f} "
            f"| {lat['p50']:.0f} / {lat['p95']:.0f} | {cp.embedded:,} | {cp.window_tokens:,} "
            f"| {cp.ledger_head:,} | {cp.runs} | {_continued_near(cp)} | {cp.max_run_events:,} "
            f"| {cp.max_run_bytes / 2**20:.2f} MB | {cp.load} |")
    hist: list[RunHistory] = x["runs"]
    cans = [r.continued_input for r in hist if r.continued_input is not None]
    ended_otherwise = [r for r in hist[:-1] if r.status != "CONTINUED_AS_NEW"]
    failures = sum(r.task_failures for r in hist)
    newest = hist[-1]
    st = x["store"]
    total = x["appended"]
    target = x["target"]
    after = x["after_appends"]
    embedded, rate = x["embedding"]
    ans = x["answering"]
    once = (st["count"] == st["distinct"] == st["seqs"] == total and st["ids_match"]
            and (total == 0 or (st["lo"] == 0 and st["hi"] == total - 1)))
    state_ok = bool(cans) and max(cans) <= STATE_LIMIT
    events = max(r.events for r in hist)
    size = max(r.bytes for r in hist)
    stuck = bool(ended_otherwise) or newest.status != "RUNNING" or not ans
    noop = x["noop"]
    stored = after["stored_and_compacted_s"]
    suggest = (f"every {x['suggest']} events (lowered)" if x["suggest"]
               else "the server's default")
    md = [
        f"One session, {target:,} messages to append through the client in batches of "
        f"{BATCH} with 36-character UUID ids (LoCoMo turns as contents); policy context window "
        f"{policy.context_window:,} tokens; embedder in the worker and the client: "
        f"{x.get('embedder', '?')}; continue-as-new "
        f"suggested by the server at {suggest}. No-op update in the same run: p50 "
        f"{noop['p50']:.1f} ms, p95 {noop['p95']:.1f} ms. Whole bench: "
        f"{x['total_seconds'] / 60:.1f} min.\n",
    ]
    if out.failures:
        md.append("**The run did not complete:**\n\n" + "".join(f"- {f}\n" for f in out.failures))
    md.append(
        "| messages | time in append_many | msgs/s | 500-batch p50 / p95 ms (segment) "
        "| embedded | window tokens | ledger head | runs | continue-as-new input so far "
        "| max events/run | max bytes/run | load 1/5 min |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|---|\n" + "\n".join(lines) + "\n")
    if stored is not None:
        md.append(
            f"- **Stored and compacted:** {total:,} messages in {stored:.0f} s = "
            f"**{total / stored:.0f} messages/s** (first append to the window back under "
            f"{policy.context_window:,} tokens; compaction caught up "
            f"{after['compacted_after_s']:.0f} s after the last append).")
    else:
        md.append(f"- **Stored and compacted:** the window was still "
                  f"{after['stats'].get('window_tokens', -1):,} tokens (policy "
                  f"{policy.context_window:,}) {COMPACT_TIMEOUT:.0f} s after the last append: "
                  "**FAIL**.")
    embedded_then = after["stats"].get("embedded", 0)
    md.append(
        f"- **Embedding:** {embedded_then:,} of {total:,} embedded by the time "
        f"compaction settled; then, with no appends running, {embedded:,} in "
        f"{x['embed_seconds']:.0f} s = **{rate:.0f} messages/s**"
        + (f" — the rest would need about {(total - embedded_then) / rate / 3600:.1f}"
           " h more, so it was not waited for (the lexical leg finds unembedded messages "
           "meanwhile)." if rate > 0 else "."))
    md.append(
        f"- **Stored exactly once:** {'pass' if once else '**FAIL**'} — {st['count']:,} rows, "
        f"{st['distinct']:,} distinct ids, {st['seqs']:,} distinct seqs "
        f"({st['lo']}..{st['hi']}), id set digest "
        f"{'matches' if st['ids_match'] else '**differs**'}; database {st['db_size']} ("
        + ", ".join(f"{name} {n / 2**20:,.1f} MB" for name, n in st.get("tables", []))
        + "). "
        f"{x['reported_duplicates']:,} messages were reported back as duplicates by "
        "append_many (a local activity retried after its first attempt had committed).")
    points = [(r.continued_at, r.continued_input) for r in hist
              if r.continued_at is not None and r.continued_input is not None]
    nearest = []
    for cp in out.checkpoints:
        if points:
            at, size_ = min(points, key=lambda p: abs(p[0] - cp.messages))
            nearest.append(f"{cp.messages:,} → {_kb(size_)} (the one at {at:,} messages)")
    md.append(
        f"- **Continue-as-new input ≤ 64 KB:** {'pass' if state_ok else '**FAIL**'} — "
        f"{len(cans)} continue-as-new, largest {_kb(max(cans) if cans else 0)}, smallest "
        f"{_kb(min(cans) if cans else 0)}. Nearest each checkpoint: "
        f"{'; '.join(nearest) if nearest else 'none'}.")
    md.append(
        f"- **History per run:** at most {events:,} events ({events / EVENT_LIMIT:.1%} of "
        f"{EVENT_LIMIT:,}) and {size / 2**20:.2f} MB ({size / HISTORY_BYTES_LIMIT:.1%} of "
        f"{HISTORY_BYTES_LIMIT / 2**20:.0f} MB), over {len(hist)} runs. {_largest(hist)}")
    answer = (f"afterwards a context() of {ans['context_tokens']} tokens (recounted "
              f"{ans['recount']}) took {ans['context_ms']:.0f} ms and one more append "
              f"{ans['append_ms']:.0f} ms" if ans else "it did **not** answer afterwards")
    md.append(
        f"- **No run stuck:** {'**FAIL**' if stuck else 'pass'} — "
        f"{sum(r.status == 'CONTINUED_AS_NEW' for r in hist)} runs ended in continue-as-new"
        f"{_otherwise(ended_otherwise)}; the newest "
        f"is {newest.status}; {failures} workflow task failures; {answer}.\n")
    return Section("A 1,000,000-message session (issue 11)", "\n".join(md))


if __name__ == "__main__":
    section, _ = asyncio.run(run())
    print(section.markdown)
