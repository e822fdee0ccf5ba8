"""bench/latency.py's report: the markdown section, each row's ratio to the no-op update
sampled in the same loop, and the verdicts against issue 11's targets; and the throughput
measures it runs after the latencies (compaction, ingestion, concurrent conversations)."""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from bench.common import Section
from bench.harness import Bench, timed

__all__ = ["BEFORE", "EVERY", "PREVIOUS", "SCALES", "START", "Row", "append_verdict", "compactions",
           "concurrency", "ingestion", "report"]

SCALES = tuple(int(x) for x in os.environ.get("LT_LATENCY_SCALES",
                                              "1000,10000,100000").split(","))
PREVIOUS = "code before a75e913 (2db6074)"
START = "3fe83f3 (before the 03:00 changes)"
BEFORE = "c9ce66a (before the 05:30 changes)"
EVERY = "dbfc7d5 (neighbours of every hit)"
TENANT = "bench"

Row = tuple[str, dict[str, float]]


async def compactions(bench: Bench, messages: list[dict[str, Any]]) -> list[float]:
    comp = await bench.lt.conversation("compaction", tenant=TENANT)
    times = []
    for round_ in range(5):
        await comp.append_many([{**m, "id": f"r{round_}-{m['id']}"} for m in messages[:200]])
        await comp.settle(timeout=600)
        times.append(await timed(lambda: comp.compact(preserve_recent=4)))
    return times


async def ingestion(bench: Bench, messages: list[dict[str, Any]]) -> float:
    """Messages per second from the first append to settled (stored, embedded, compacted)."""
    conv = await bench.lt.conversation("ingest", tenant=TENANT)
    msgs = [{**m, "id": f"{k}-{m['id']}"} for k in range(5) for m in messages][:2000]
    t0 = time.perf_counter()
    for start in range(0, len(msgs), 50):
        await conv.append_many(msgs[start : start + 50])
    await conv.settle(timeout=1200)
    return len(msgs) / (time.perf_counter() - t0)


async def concurrency(bench: Bench, texts: list[str]) -> dict[str, int]:
    """200 live conversations driven by 20 concurrent clients; every error is counted."""
    gate = asyncio.Semaphore(20)
    errors = ok = 0

    async def one(k: int) -> None:
        nonlocal errors, ok
        async with gate:
            try:
                conv = await bench.lt.conversation(f"live-{k}", tenant=TENANT)
                for j in range(3):
                    await conv.append_many([{"id": f"{j}-{i}", "role": "user",
                                             "content": texts[(k + i) % len(texts)]}
                                            for i in range(5)])
                window = await conv.context(texts[k % len(texts)], max_tokens=500)
                assert window.tokens <= 500
                ok += 1
            except Exception:
                errors += 1

    await asyncio.gather(*(one(k) for k in range(200)))
    return {"conversations": 200, "clients": 20, "ok": ok, "errors": errors}



def _verdict(ok: bool) -> str:
    return "pass" if ok else "**FAIL**"


def _base_for(name: str, rows: list[Row]) -> dict[str, float] | None:
    """The no-op update sampled in the same loop as `name`."""
    by = dict(rows)
    for label in ("[live]", "[quiet]"):
        if name.endswith(label):
            return by.get(f"no-op update {label}")
    for scale in SCALES:
        if f"at {scale:,}" in name:
            return by.get(f"no-op update (with context() at {scale:,})")
    return by.get(f"no-op update (with context() at {SCALES[-1]:,})")


def _table(rows: list[Row]) -> str:
    def ratio(name: str, p: dict[str, float], key: str) -> str:
        base = _base_for(name, rows)
        return f"{p[key] / base[key]:.2f}×" if base else "—"

    return ("| operation | n | p50 ms | p95 ms | p99 ms | p50 / no-op | p95 / no-op |\n"
            "|---|---|---|---|---|---|---|\n" + "\n".join(
                f"| {name} | {p['n']:.0f} | {p['p50']:.1f} | {p['p95']:.1f} | {p['p99']:.1f} | "
                f"{ratio(name, p, 'p50')} | {ratio(name, p, 'p95')} |" for name, p in rows)
            + "\n")


def append_verdict(append_rows: list[Row], label: str) -> str:
    """Issue 11's append targets for the rows sampled `label` ("quiet" or "live"): p50 of
    append_many(1) and of append_many(100) as multiples of the no-op update's."""
    by = dict(append_rows)
    base = by[f"no-op update [{label}]"]
    one = by[f"append_many(1) [{label}]"]["p50"] / base["p50"]
    hundred = by[f"append_many(100) [{label}]"]["p50"] / base["p50"]
    return (f"- append_many(1) [{label}]: p50 {one:.2f}× the no-op (target ≤ 1.3×): "
            f"{_verdict(one <= 1.3)}; append_many(100): {hundred:.2f}× (target ≤ 2×): "
            f"{_verdict(hundred <= 2.0)}.")


def report(append_rows: list[Row], context_rows: list[Row], extra: dict[str, Any]) -> Section:
    verdicts = [append_verdict(append_rows, label) for label in ("live", "quiet")]
    ctx = extra["context"]
    top = SCALES[-1]
    main = dict(context_rows)[f"context() at {top:,}"]
    base = dict(context_rows)[f"no-op update (with context() at {top:,})"]
    verdicts.append(
        f"- context() at {top:,} messages (count checked: {ctx['count']:,}), query embedded "
        f"in the client with the product's default embedder: p50 {main['p50']:.1f} ms (target "
        f"≤ 30) {_verdict(main['p50'] <= 30)}, p95 {main['p95']:.1f} ms (target ≤ 60) "
        f"{_verdict(main['p95'] <= 60)}; the no-op update in the same loop: p50 "
        f"{base['p50']:.1f} ms, p95 {base['p95']:.1f} ms.")
    if (every := dict(context_rows).get(f"context() at {top:,}, code at {EVERY}")) is not None:
        verdicts.append(
            f"- The code at {EVERY}, interleaved in the same loop (its windows may differ: it "
            f"also offers assembly the neighbours of the lower half of the hits): p50 "
            f"{every['p50']:.1f} ms, p95 {every['p95']:.1f} ms; new / old: "
            f"{main['p50'] / every['p50']:.2f}× at p50, {main['p95'] / every['p95']:.2f}× at "
            "p95. The three older codes below are checked against it.")
    for label, name in ((f"The {PREVIOUS}", f"context() at {top:,}, {PREVIOUS}"),
                        (f"The code at {START}", f"context() at {top:,}, code at {START}"),
                        (f"The code at {BEFORE}", f"context() at {top:,}, code at {BEFORE}")):
        if (old := dict(context_rows).get(name)) is not None:
            verdicts.append(
                f"- {label}, interleaved in the same loop (same windows checked on 5 "
                f"questions): p50 {old['p50']:.1f} ms, p95 {old['p95']:.1f} ms; new / old: "
                f"{main['p50'] / old['p50']:.2f}× at p50, {main['p95'] / old['p95']:.2f}× at "
                "p95.")
    onnx = dict(context_rows).get(f"context() at {top:,}, ONNX int8 query embedder")
    if onnx:
        verdicts.append(f"- The same with the ONNX int8 MiniLM as the client's query embedder "
                        f"(not the default today): p50 {onnx['p50']:.1f} ms "
                        f"{_verdict(onnx['p50'] <= 30)}, p95 {onnx['p95']:.1f} ms "
                        f"{_verdict(onnx['p95'] <= 60)}.")
    c = extra["concurrency"]
    comp = extra["compact"]
    fills = ", ".join(f"{k:,}: {v:.0f} s" for k, v in ctx["fill_s"].items())
    loads = ", ".join(f"{k:,}: {v}" for k, v in ctx["load"].items())
    md = (
        f"Client, worker and no-op workflow in one process; every operation sampled "
        f"interleaved with the no-op update. Bench took {extra['seconds'] / 60:.1f} min; "
        f"load average (1/5 min) {extra['load_start']} at the start, {loads} after each "
        f"context() scale, {extra['load_append']} after the append samples (run last), "
        f"{extra['load_end']} at the end.\n\n"
        + "\n".join(verdicts) + "\n\n**Append cost** (live: back to back, background "
        "embedding and compaction of earlier appends running; quiet: settled before each "
        "sample)\n\n" + _table(append_rows)
        + "\n**context()** (max_tokens=2000, LoCoMo questions as queries; parts indented, "
        f"each timed alone at {top:,}; sessions filled in {fills})\n\n"
        + _table(context_rows) + "\n"
        f"Extractive compact() of ~200 messages: p50 {comp['p50']:.0f} ms, p95 "
        f"{comp['p95']:.0f} ms (n={comp['n']:.0f}).\n\n"
        f"Ingestion through the client with local MiniLM embeddings: "
        f"**{extra['ingest_per_s']:.0f} messages/s** (2,000 LoCoMo turns in batches of 50, "
        "first append to settled).\n\n"
        f"{c['conversations']} live conversations from {c['clients']} concurrent clients: "
        f"{c['ok']} completed, **{c['errors']} errors**.\n")
    return Section("Latency and throughput (issues 7 and 11)", md)


