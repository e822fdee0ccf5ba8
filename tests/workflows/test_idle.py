"""A session closes after `idle_timeout_seconds` without an append, counted from its last
append (it was counted from when the run began waiting, so a session in use closed under its
user), and an append that meets a closing run goes to the next run instead of being refused."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Sequence

from temporalio.client import Client, WorkflowExecutionStatus

from activities.conversation import ConversationActivities
from activities.providers.embedders import LocalEmbedder
from memory.store.store import Store
from tests.conftest import LtFactory
from worker.main import build_worker


def _turns(start: int, n: int, prefix: str) -> list[dict[str, str]]:
    return [{"id": f"{prefix}{i}", "role": ("user", "assistant")[i % 2],
             "content": f"Turn {i} about the parcel to Leeds."} for i in range(start, start + n)]


async def test_idle_is_counted_from_the_last_append(
    client: Client, make_lt: LtFactory, activities: ConversationActivities, task_queue: str
) -> None:
    lt = make_lt(client, window=100_000, idle_timeout_seconds=2)
    session = f"busy-{uuid.uuid4().hex[:8]}"
    async with build_worker(client, task_queue, activities.all(), max_cached_workflows=0):
        conv = await lt.conversation(session, tenant="acme")
        first_run = (await conv.handle.describe()).run_id
        for n in range(4):  # an append every 1.2 s: never 2 s without one, 4.8 s in all
            await conv.append_many(_turns(n, 1, "m"))
            await asyncio.sleep(1.2)
        running = await conv.handle.describe()
        assert running.status == WorkflowExecutionStatus.RUNNING
        assert running.run_id == first_run  # the same run: it never closed
        last = time.monotonic()
        await conv.append_many(_turns(4, 1, "m"))
        stats = await conv.handle.result()  # closes by itself, 2 s after that append
        assert time.monotonic() - last >= 1.9
        assert stats.messages == 5


class _SlowEmbedder:
    """The real embedder, a second slower per batch: a closing run finishes its embedding
    backlog first, so it stays closing long enough for an append to meet it."""

    def __init__(self, inner: LocalEmbedder) -> None:
        self.inner, self.name, self.dim = inner, inner.name, inner.dim

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        await asyncio.sleep(1.0)
        return await self.inner.embed(list(texts))


async def test_an_append_that_meets_a_closing_run_goes_to_the_next(
    client: Client, make_lt: LtFactory, store: Store, embedder: LocalEmbedder,
    task_queue: str
) -> None:
    slow = ConversationActivities(store, _SlowEmbedder(embedder))
    lt = make_lt(client, window=100_000, idle_timeout_seconds=1)
    session = f"closing-{uuid.uuid4().hex[:8]}"
    async with build_worker(client, task_queue, slow.all(), max_cached_workflows=0):
        conv = await lt.conversation(session, tenant="acme")
        await conv.append_many(_turns(0, 500, "m"))  # 8 embedding batches: 8 s of backlog
        first_run = (await conv.handle.describe()).run_id
        for _ in range(100):  # until idle: the run is closing, its backlog not done
            stats = await conv.stats()
            if stats.closing:
                break
            await asyncio.sleep(0.1)
        assert stats.closing and stats.pending_embedding > 0, stats
        result = await conv.append_many(_turns(500, 1, "m"))  # was: "session: is closed"
        assert result.appended == 1
        assert (await conv.handle.describe()).run_id != first_run
    assert await store.count("acme", session) == 501
