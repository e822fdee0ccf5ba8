"""Append cost (issue 11's target on its own), with the schema before migration 12 in the run.

- `append_many` of 1 and of 100 messages through the client against the no-op update,
  interleaved, quiet (settled before each sample) and live (back to back, background work
  running): `bench.latency.append_cost`, the sampling the full latency run does.
- The floor, in a third pass beside them: `bench.floor.FloorWorkflow`, whose update only runs
  the same store transaction in a local activity. What any append that stores its batch
  before the update returns pays on this machine; the gap to `append_many` is the
  conversation workflow's own work.
- The store's transaction alone: `store.append_messages(100)` into a session already holding
  20,000 LoCoMo turns, on three databases of one Postgres, interleaved; the third stops
  before migration 16 (`longthread_search_text` in the text vector), so that migration's
  cost is measured beside it. One has this tree's
  schema, where the inverted index is written after the append (`Store.index_terms`, run by
  the embedding activity); the other stops at migration 11, where a trigger writes the
  postings inside the append. Same code and data. `index_terms` after each 100 is timed too:
  that cost moved off the append's path, it did not vanish.

`python -m bench.append` prints the section.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import psycopg
from psycopg import sql
from temporalio import activity
from temporalio.worker import Worker

from bench.common import Section, machine, percentiles, vacuum
from bench.floor import FLOOR_ACTIVITY, FloorWorkflow
from bench.harness import Bench, NoopWorkflow, bench_stack, load, log, noop_workflow, timed
from bench.latency import append_cost, interleaved
from bench.latency_report import Row, append_verdict
from longthread.locomo import load_samples
from memory.models import Message, parse_messages
from memory.policy import CompactionPolicy
from memory.store.db import open_pool
from memory.store.migrations import MIGRATIONS
from memory.store.store import Store

__all__ = ["run"]

SAMPLES = int(os.environ.get("LT_APPEND_SAMPLES", "90"))
FILLED = 20_000
TENANT = "bench"
BEFORE = 11  # the last migration with the indexing trigger
# Later migrations today's append statement needs that leave indexing as it was: 14, the
# session row's recent request names; 15, the erased mark every write checks (without it the
# section failed from migration 15 on). Applied to the schema-11 side too, so that both sides
# run the same statement and differ only in where the postings are written (and, from 16, in
# the text the tsv is made of: migration 16 is not applied to that side).
APPEND_NEEDS = (14, 15)
SCRIPTS = 16  # the migration that made the lexical index read every script (session 29)


@asynccontextmanager
async def store_before_indexing_moved(bench: Bench, before: int = BEFORE,
                                      needs: tuple[int, ...] = APPEND_NEEDS
                                      ) -> AsyncIterator[Store]:
    """A second database on the bench's Postgres, migrated to version `before` (and `needs`)."""
    name = f"lt_v{before}_{uuid.uuid4().hex[:8]}"
    async with await psycopg.AsyncConnection.connect(bench.database_url,
                                                     autocommit=True) as admin:
        await admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = psycopg.conninfo.make_conninfo(bench.database_url, dbname=name)
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute("CREATE TABLE schema_version (version integer PRIMARY KEY,"
                           " applied_at timestamptz NOT NULL DEFAULT now())")
        for n, statement in enumerate(MIGRATIONS[:before], start=1):
            await conn.execute(statement.format(dim=sql.Literal(384)))
            await conn.execute("INSERT INTO schema_version (version) VALUES (%s)", (n,))
        for n in needs:
            await conn.execute(MIGRATIONS[n - 1].format(dim=sql.Literal(384)))
    pool = await open_pool(url, max_size=4)
    try:
        yield Store(pool)
    finally:
        await pool.close()


def _batches(texts: list[str]) -> Callable[[int], list[Message]]:
    counter = itertools.count()
    return lambda size: [Message(id=str(uuid.uuid4()), role="user",
                                 content=texts[next(counter) % len(texts)])
                         for _ in range(size)]


async def _store_rows(bench: Bench, texts: list[str], n: int) -> list[Row]:
    old_session, new_session = "append-before-12", "append-now"
    async with store_before_indexing_moved(bench) as old, \
            store_before_indexing_moved(bench, SCRIPTS - 1, ()) as plain:
        batch = _batches(texts)
        for _ in range(FILLED // 500):
            for store, session in ((old, old_session), (bench.store, new_session),
                                   (plain, new_session)):
                await store.append_messages(TENANT, session, batch(500))
        for store in (bench.store, plain):
            await store.index_terms(TENANT, new_session)
        for store in (old, bench.store, plain):
            await vacuum(store)
        ops: dict[str, Callable[[], Awaitable[Any]]] = {
            "store.append_messages(100), index written by a trigger inside it (schema 11)":
                lambda: old.append_messages(TENANT, old_session, batch(100)),
            "store.append_messages(100), index written later (this tree)":
                lambda: bench.store.append_messages(TENANT, new_session, batch(100)),
            "  then store.index_terms for those 100 (the embedding activity's first step)":
                lambda: bench.store.index_terms(TENANT, new_session),
            f"store.append_messages(100), schema {SCRIPTS - 1} (before the text in every "
            "script)": lambda: plain.append_messages(TENANT, new_session, batch(100)),
            "  then store.index_terms for those 100": lambda: plain.index_terms(TENANT,
                                                                           new_session),
        }
        out: dict[str, list[float]] = {name: [] for name in ops}
        for i in range(n):  # the appends take turns going first
            names = list(ops)
            order = [names[k] for k in ((1, 2, 3, 4, 0), (3, 4, 0, 1, 2), (0, 1, 2, 3, 4))[i % 3]]
            for name in order:
                out[name].append(await timed(ops[name]))
    return [(name, percentiles(v)) for name, v in out.items()]


async def _floor_rows(bench: Bench, noop: Any, texts: list[str], n: int) -> list[Row]:
    """The no-op, append_many and the floor workflow (`bench.floor`), each settled first."""
    session = "append-floor"

    @activity.defn(name=FLOOR_ACTIVITY)
    async def store(messages: list[dict[str, Any]]) -> int:
        out = await bench.store.append_messages(TENANT, session, parse_messages(messages))
        return out.appended

    queue = f"{bench.queue}-floor"
    async with Worker(bench.client, task_queue=queue, workflows=[FloorWorkflow],
                      activities=[store]):
        floor = await bench.client.start_workflow(FloorWorkflow.run, id=f"floor-{uuid.uuid4()}",
                                                  task_queue=queue)
        conv = await bench.lt.conversation("append-floor-client", tenant=TENANT)
        batch = _batches(texts)

        def plain(size: int) -> list[dict[str, Any]]:
            return [m.model_dump(mode="json", include={"id", "role", "content"})
                    for m in batch(size)]

        ops: dict[str, Callable[[], Awaitable[Any]]] = {
            "no-op update [floor pass]": lambda: noop.execute_update(NoopWorkflow.noop),
            "append_many(1) [floor pass]": lambda: conv.append_many(batch(1)),
            "floor(1): update → local activity → store [floor pass]":
                lambda: floor.execute_update(FloorWorkflow.store, plain(1)),
            "append_many(100) [floor pass]": lambda: conv.append_many(batch(100)),
            "floor(100): update → local activity → store [floor pass]":
                lambda: floor.execute_update(FloorWorkflow.store, plain(100)),
        }
        for op in ops.values():  # the first calls pay for each workflow's first tasks
            await op()

        async def settle() -> None:
            await conv.settle(timeout=600, poll=0.05)

        try:
            out = await interleaved(ops, n, between=settle)
        finally:
            await floor.signal(FloorWorkflow.stop)
    return [(name, percentiles(v)) for name, v in out.items()]


def _floor_note(rows: list[Row]) -> str:
    by = {name: p["p50"] for name, p in rows}
    base = by["no-op update [floor pass]"]
    parts = []
    for size in (1, 100):
        mine = by[f"append_many({size}) [floor pass]"]
        least = by[f"floor({size}): update → local activity → store [floor pass]"]
        parts.append(f"of {size}, the floor {least / base:.2f}× and append_many "
                     f"{mine / base:.2f}× ({mine - least:.1f} of its {mine - base:.1f} ms over "
                     "the no-op are the conversation workflow's own)")
    return ("- The floor (`bench/floor.py`: a workflow whose update only runs the same store "
            "transaction in a local activity), p50 against the no-op: " + "; ".join(parts)
            + ". The workflow's own work is the client's checks, parsing the batch in the "
            "sandbox, the cursors, and the embedding activity it schedules.")


def _table(rows: list[Row], base: dict[str, float] | None = None) -> str:
    lines = ["| operation | n | p50 ms | p95 ms | p50 / base | p95 / base |",
             "|---|---|---|---|---|---|"]
    for name, p in rows:
        ref = base or p
        lines.append(f"| {name} | {p['n']:.0f} | {p['p50']:.1f} | {p['p95']:.1f} | "
                     f"{p['p50'] / ref['p50']:.2f}× | {p['p95'] / ref['p95']:.2f}× |")
    return "\n".join(lines) + "\n"


async def run(n: int = SAMPLES) -> tuple[Section, dict[str, Any]]:
    texts = [m["content"] for s in load_samples() for m in s.messages]
    extra: dict[str, Any] = {"load_start": load()}
    client_rows: list[Row] = []
    async with bench_stack(CompactionPolicy()) as bench, noop_workflow(bench) as noop:
        for quiet in (True, False):
            label = "quiet" if quiet else "live"
            log("append", f"append_many against the no-op, {label}")
            times = await append_cost(bench, noop, texts, max(30, n // 3) if quiet else n,
                                      quiet)
            client_rows.extend((f"{name} [{label}]", percentiles(v))
                               for name, v in times.items())
        log("append", "the floor: a bare workflow whose update runs the store's transaction")
        floor_rows = await _floor_rows(bench, noop, texts, max(30, n // 3))
        log("append", "the store's transaction, schema 11 beside this tree")
        store_rows = await _store_rows(bench, texts, n)
    extra["load_end"] = load()
    return _report(client_rows, floor_rows, store_rows, extra), {
        "client": client_rows, "floor": floor_rows, "store": store_rows, **extra}


def _report(client_rows: list[Row], floor_rows: list[Row], store_rows: list[Row],
            extra: dict[str, Any]) -> Section:
    by = dict(client_rows)
    parts = [f"{machine()}; load {extra['load_start']} at the start, {extra['load_end']} at "
             "the end.\n"]
    for label in ("quiet", "live"):
        parts.append(append_verdict(client_rows, label))
        rows = [(name, p) for name, p in client_rows if name.endswith(f"[{label}]")]
        parts.append("\n" + _table(rows, by[f"no-op update [{label}]"]))
    parts.append("\n**What any append that stores before it returns pays** (a third pass, "
                 "every sample settled first, the five interleaved):\n\n" + _floor_note(floor_rows)
                 + "\n\n" + _table(floor_rows, dict(floor_rows)["no-op update [floor pass]"]))
    parts.append(f"\n**The store's transaction alone** ({FILLED:,} turns in the session "
                 "first, vacuumed; ratios to the schema-11 append):\n\n"
                 + _table(store_rows, store_rows[0][1]))
    return Section("Append cost: append_many against the no-op, and the append's "
                   "transaction before and after migration 12", "\n".join(parts))


if __name__ == "__main__":
    print(asyncio.run(run())[0].markdown)
