"""A whole embedded stack for benchmarks: Postgres, Temporal, a worker, and a client."""

from __future__ import annotations

import asyncio
import tempfile
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from temporalio import workflow
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Worker

from activities.conversation import ConversationActivities
from activities.providers.embedders import LocalEmbedder
from longthread.client import Longthread
from memory.policy import CompactionPolicy
from memory.store.db import open_pool
from memory.store.migrations import migrate
from memory.store.store import Store
from worker.main import build_worker
from worker.settings import Settings
from worker.stack import EmbeddedPostgres, TemporalDevServer, free_port

__all__ = ["Bench", "NoopWorkflow", "bench_stack"]


@workflow.defn(sandboxed=False)
class NoopWorkflow:
    """The baseline: an update that does nothing, on the same server and worker process."""

    def __init__(self) -> None:
        self.done = False

    @workflow.run
    async def run(self) -> None:
        await workflow.wait_condition(lambda: self.done)

    @workflow.update
    def noop(self) -> None:
        return None

    @workflow.signal
    def stop(self) -> None:
        self.done = True


@dataclass
class Bench:
    client: Client
    store: Store
    lt: Longthread
    queue: str
    embedder: LocalEmbedder


@asynccontextmanager
async def bench_stack(policy: CompactionPolicy | None = None) -> AsyncIterator[Bench]:
    with tempfile.TemporaryDirectory(prefix="lt-bench-") as tmp:
        postgres = EmbeddedPostgres(Path(tmp) / "pg")
        url = postgres.start()
        temporal = TemporalDevServer(Path(tmp) / "t", port=free_port(), ui_port=None)
        temporal.start()
        try:
            await migrate(url)
            await temporal.wait_ready()
            pool = await open_pool(url, max_size=12)
            client = await Client.connect(temporal.address,
                                          data_converter=pydantic_data_converter)
            embedder = LocalEmbedder()
            await asyncio.to_thread(embedder.model)
            store = Store(pool)
            queue = f"bench-{uuid.uuid4()}"
            acts = ConversationActivities(store, embedder)
            noop = Worker(client, task_queue=queue + "-noop", workflows=[NoopWorkflow])
            async with build_worker(client, queue, acts.all()), noop:
                yield Bench(client, store, Longthread(client, Settings(task_queue=queue),
                                                      policy), queue, embedder)
            await pool.close()
        finally:
            temporal.stop()
            postgres.stop()
