"""A whole embedded stack for benchmarks: Postgres, Temporal, a worker, and a client.

The worker runs in this process, as in the tests; so does the client. The no-op update
baseline (`NoopWorkflow`) runs on the same server, worker process and event loop, so ratios
against it compare like with like.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import ExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from temporalio import workflow
from temporalio.client import Client, WorkflowHandle
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Worker

from activities.conversation import ConversationActivities
from activities.providers.embedders import Embedder, local_embedder
from longthread.client import Longthread
from longthread.settings import Settings
from memory.policy import CompactionPolicy
from memory.store.db import open_pool
from memory.store.migrations import migrate
from memory.store.store import Store
from worker.lifeline import Watchdog
from worker.main import build_worker
from worker.stack import EmbeddedPostgres, TemporalDevServer, free_port

__all__ = ["Bench", "NoopWorkflow", "bench_stack", "default_embedder", "embedder_name", "load",
           "log", "noop_workflow", "timed", "warm"]


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
    embedder: Embedder
    temporal_address: str
    database_url: str


def default_embedder() -> Embedder:
    """What the product picks for `embedder=local` on both sides (worker/wiring.py and the
    client go through activities/providers/choose.py): the ONNX int8 MiniLM when its wheels
    import, else the torch MiniLM. Benches use the same pick so they measure what users get."""
    return local_embedder()


def embedder_name(embedder: object) -> str:
    """How a section names the embedder it ran with."""
    names = {"OnnxMiniLMEmbedder": "ONNX int8 MiniLM (`OnnxMiniLMEmbedder`, onnxruntime)",
             "LocalEmbedder": "torch MiniLM (`LocalEmbedder`, sentence-transformers)",
             "MpnetEmbedder": "ONNX int8 all-mpnet-base-v2 (`MpnetEmbedder`, onnxruntime)"}
    kind = type(embedder).__name__
    return names.get(kind, f"`{kind}`")


async def warm(embedder: Embedder) -> None:
    """Load the model before anything is timed."""
    await embedder.embed(["warm up"])


def log(section: str, text: str) -> None:
    print(f"[{section} {time.strftime('%H:%M:%S')}] {text} (load {load()})", file=sys.stderr,
          flush=True)


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"{one:.1f}/{five:.1f}"


async def timed(fn: Callable[[], Awaitable[Any]]) -> float:
    t0 = time.perf_counter()
    await fn()
    return (time.perf_counter() - t0) * 1000


@asynccontextmanager
async def noop_workflow(bench: Bench) -> AsyncIterator[WorkflowHandle[NoopWorkflow, None]]:
    handle = await bench.client.start_workflow(NoopWorkflow.run, id=f"noop-{uuid.uuid4()}",
                                               task_queue=bench.queue + "-noop")
    try:
        for _ in range(5):  # the first updates pay for the workflow's first tasks
            await handle.execute_update(NoopWorkflow.noop)
        yield handle
    finally:
        await handle.signal(NoopWorkflow.stop)


@asynccontextmanager
async def bench_stack(policy: CompactionPolicy | None = None, *,
                      embedder: Embedder | None = None,
                      dynamic_config: Mapping[str, str] | None = None,
                      pool_size: int = 12, tmp: Path | None = None,
                      worker_options: Mapping[str, Any] | None = None) -> AsyncIterator[Bench]:
    """Start Postgres, a Temporal dev server, the conversation worker and the no-op worker;
    `embedder` is used by the worker (indexing) and by the client (query embedding)."""
    with tempfile.TemporaryDirectory(prefix="lt-bench-", dir=tmp,
                                     ignore_cleanup_errors=True) as root, ExitStack() as stops:
        postgres = EmbeddedPostgres(Path(root) / "pg")
        temporal = TemporalDevServer(Path(root) / "t", port=free_port(), ui_port=None,
                                     dynamic_config=dict(dynamic_config or {}))
        # A bench killed by a signal (or a timeout's SIGKILL) runs no `finally`; the watchdog
        # then stops both servers and removes the directory, as for `longthread dev`. The
        # stops run last-in first, each despite the others' errors, from whatever started.
        watchdog = Watchdog(temporal.db_file, postgres.pgdata, Path(root) / "watchdog.log",
                            remove=(Path(root),))
        watchdog.start()
        stops.callback(watchdog.stop)
        stops.callback(postgres.stop)
        url = postgres.start()
        stops.callback(temporal.stop)
        temporal.start()
        embedder = embedder or default_embedder()
        await migrate(url, embedder.dim)  # the archive is made for the embedder's vectors
        await temporal.wait_ready()
        pool = await open_pool(url, max_size=pool_size)
        try:
            client = await Client.connect(temporal.address,
                                          data_converter=pydantic_data_converter)
            await warm(embedder)
            store = Store(pool)
            queue = f"bench-{uuid.uuid4()}"
            acts = ConversationActivities(store, embedder)
            noop = Worker(client, task_queue=queue + "-noop", workflows=[NoopWorkflow])
            async with build_worker(client, queue, acts.all(),
                                    **dict(worker_options or {})), noop:
                yield Bench(client, store,
                            Longthread(client, Settings(task_queue=queue), policy,
                                       store=store, embedder=embedder),
                            queue, embedder, temporal.address, url)
        finally:
            await pool.close()
            await asyncio.sleep(0)
