"""serve_context never holds a pooled connection while it waits for another, so more
concurrent calls than the pool has connections all finish (none waits for the pool to time
out)."""

from __future__ import annotations

import asyncio
import uuid

from activities.serving import serve_context
from activities.types import ContextRequest
from memory.models import Message
from memory.store.db import open_pool
from memory.store.store import Store


class _Fixed:
    async def embed(self, texts: list[str]) -> list[list[float]]:
        await asyncio.sleep(0.05)  # every call holds what it holds while this runs
        return [[1.0] + [0.0] * 383 for _ in texts]


async def test_more_concurrent_contexts_than_pooled_connections(app_url: str) -> None:
    pool = await open_pool(app_url, max_size=2, timeout=10)
    try:
        store = Store(pool)
        session = f"pool-{uuid.uuid4()}"
        await store.append_messages("acme", session, [
            Message(id=f"p{i}", role="user", content=f"The parcel {i} is in depot {i}.")
            for i in range(20)])
        windows = await asyncio.wait_for(asyncio.gather(*(
            serve_context(store, _Fixed(), "acme", session,
                          ContextRequest(query=f"where is parcel {i}?", max_tokens=300))
            for i in range(8))), timeout=9)
        assert len(windows) == 8
        assert len(await store.served("acme", session)) == 8
    finally:
        await pool.close()
