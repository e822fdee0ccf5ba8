"""Faults on one machine: a worker SIGKILLed 20 times, the Temporal server restarted 10 times,
Postgres stopped for 60 s. Exact counts afterwards: nothing lost, nothing twice."""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from temporalio.api.enums.v1 import PendingActivityState
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

from activities.conversation import ConversationActivities
from activities.providers.embedders import LocalEmbedder
from longthread.client import Conversation, Longthread
from memory.models import CompactionRecord
from memory.policy import CompactionPolicy
from memory.store.db import open_pool
from memory.store.migrations import migrate
from memory.store.store import Store
from tests.processes import WorkerProcess
from worker.main import build_worker
from worker.settings import Settings
from worker.stack import EmbeddedPostgres, TemporalDevServer, free_port

pytestmark = pytest.mark.slow
POLICY = CompactionPolicy(context_window=600, preserve_recent=4)
KILLS = 20  # that land while an activity of the session is running
MAX_KILLS = 26  # and up to 6 that miss
WORDS = "order refund parcel Leeds express invoice Caroline Melanie painting camping".split()


def _batch(n: int, size: int = 30) -> list[dict[str, Any]]:
    return [{"id": f"b{n}-{i}", "role": ("user", "assistant")[i % 2],
             "content": f"{WORDS[(n + i) % 10].capitalize()} {n}.{i}: about the "
                        f"{WORDS[(n * i) % 10]} and the {WORDS[(n + 3 * i) % 10]}."}
            for i in range(size)]


async def _quiet(conv: Conversation, timeout: float = 180) -> None:
    await conv.settle(timeout=timeout)


async def _kill_during_activity(conv: Conversation, worker: WorkerProcess,
                                timeout: float = 90.0) -> bool:
    """SIGKILL the worker as soon as it is running one of the session's activities (an
    embedding or a compaction that this very process started); True if the kill landed so.
    After a kill, the retried activity starts only once its 15 s heartbeat timeout has passed
    and the restarted worker has loaded its model: on a loaded 2-core machine that took over
    the 30 s this waited before (19 of 20 kills landed in one clean-clone run)."""
    assert worker.proc is not None
    me = f"{worker.proc.pid}@"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        described = await conv.handle.describe()
        if any(p.state == PendingActivityState.PENDING_ACTIVITY_STATE_STARTED
               and p.last_worker_identity.startswith(me)
               for p in described.raw_description.pending_activities):
            worker.kill()
            return True
        await asyncio.sleep(0.01)
    worker.kill()
    return False


def _shape(ledger: list[CompactionRecord]) -> list[tuple[Any, ...]]:
    """A record without its wall-clock fields (when, how long): those differ run to run."""
    return [(r.id, r.level, r.covered_ids, r.covered_hash, r.summary.content if r.summary
             else None, r.tokens_before, r.tokens_after) for r in ledger]


@pytest.mark.timeout(1500)  # alone ~5.5 min; each missed kill adds up to 90 s and a restart
async def test_worker_sigkilled_twenty_times(
    client: Client, app_url: str, store: Store, activities: ConversationActivities,
    tmp_path: Path,
) -> None:
    batches = 11  # two kills in each of the first ten; the eleventh makes up for a miss
    # The fault-free run of the same input, for the ledger comparison.
    calm_queue = f"calm-{uuid.uuid4()}"
    async with build_worker(client, calm_queue, activities.all()):
        calm = await Longthread(client, Settings(task_queue=calm_queue), POLICY,
                                store=store).conversation("calm", tenant="faults")
        for n in range(batches):
            await calm.append_many(_batch(n))
            await _quiet(calm)
        expected = await calm.ledger()

    queue = f"kill-{uuid.uuid4()}"
    worker = WorkerProcess({"LONGTHREAD_TEMPORAL_ADDRESS": client.service_client.config
                            .target_host, "LONGTHREAD_TASK_QUEUE": queue,
                            "LONGTHREAD_DATABASE_URL": app_url}, tmp_path / "w.log")
    worker.start()
    rng = random.Random(20)
    kills = landed = 0
    try:
        lt = Longthread(client, Settings(task_queue=queue), POLICY, store=store)
        conv = await lt.conversation("killed", tenant="faults")
        for n in range(batches):
            await conv.append_many(_batch(n))
            # Twice per batch, each time while an activity is running. A kill can miss: a
            # retried activity may finish between two looks at the workflow (one clean-clone
            # run on a loaded machine saw it once). After a miss nothing of this batch is
            # left to run, so the kill it owes is made in the next batch, once its append
            # has started new work (the last batch only makes up); misses are extra kills,
            # never counted as landed.
            while landed < min(KILLS, 2 * (n + 1)) and kills < MAX_KILLS:
                await asyncio.sleep(rng.uniform(0.0, 0.05))
                hit = await _kill_during_activity(conv, worker)
                landed += hit
                kills += 1
                worker.start()
                if not hit:
                    break
            await _quiet(conv, timeout=300)
        ledger = await conv.ledger()
        stats = await conv.stats()
    finally:
        worker.stop()
    assert landed == KILLS, f"only {landed} of {kills} kills hit a running activity"
    ids = [m.id for m in await store.all_messages("faults", "killed")]
    assert len(ids) == batches * 30 == len(set(ids)) == stats.messages
    covered = [i for r in ledger for i in r.covered_ids]
    assert len(covered) == len(set(covered)), "a compaction was applied twice"
    assert len({r.id for r in ledger}) == len(ledger)
    assert await store.ledger("faults", "killed") == ledger
    assert _shape(ledger) == _shape(expected)


async def test_temporal_restarted_ten_times_and_postgres_gone_for_75_seconds(
    tmp_path: Path, embedder: LocalEmbedder
) -> None:
    temporal = TemporalDevServer(tmp_path / "t", port=free_port(), ui_port=None)
    postgres = EmbeddedPostgres(tmp_path / "pg")
    url = postgres.start()
    await migrate(url)
    temporal.start()
    await temporal.wait_ready()
    pool = await open_pool(url)
    store = Store(pool)
    client = await Client.connect(temporal.address, data_converter=pydantic_data_converter)
    queue = f"restart-{uuid.uuid4()}"
    acts = ConversationActivities(store, embedder)
    try:
        async with build_worker(client, queue, acts.all()):
            lt = Longthread(client, Settings(task_queue=queue), POLICY, store=store,
                            embedder=embedder)
            convs = [await lt.conversation(f"r{k}", tenant="faults") for k in range(3)]
            for n in range(10):
                for conv in convs:
                    await conv.append_many(_batch(n, 10))
                temporal.kill()
                temporal.start()
                await temporal.wait_ready()
            for conv in convs:
                await _quiet(conv)
                stats = await conv.stats()
                assert stats.messages == 100 and stats.pending_embedding == 0
                assert await store.count("faults", conv.session) == 100

            postgres.stop()
            # Appends store before they return, so during the outage they wait (their local
            # activity retries); none fails, and each lands once the database is back.
            waiting = [asyncio.create_task(conv.append_many(_batch(n, 10)))
                       for n in range(10, 13) for conv in convs]
            # 75 s: past psycopg_pool's reconnection tries at about 1, 3, 7, 15, 31 and 63 s;
            # with its default 300 s per attempt the next try came at 127 s, and the appends
            # landed 40.8 s after Postgres was back (45-53 s in an SRE's user test).
            await asyncio.sleep(75)
            assert not any(task.done() for task in waiting), "an append failed or was lost"
            postgres.start()
            restarted = time.monotonic()
            results = await asyncio.wait_for(asyncio.gather(*waiting), timeout=240)
            waited = time.monotonic() - restarted
            assert waited < 30, f"appends landed {waited:.1f} s after Postgres was back"
            assert sum(r.appended for r in results) == 90
            for conv in convs:
                await _quiet(conv, timeout=240)
                ids = [m.id for m in await store.all_messages("faults", conv.session)]
                assert len(ids) == len(set(ids)) == 130
                desc = await conv.handle.describe()
                assert desc.status is not None and desc.status.name == "RUNNING"
    finally:
        await pool.close()
        temporal.stop()
        postgres.stop()
