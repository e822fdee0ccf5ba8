"""SIGKILL the worker in the middle of a compaction; it commits exactly once, nothing lost."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

from temporalio.client import Client

from longthread.client import Longthread
from memory.policy import CompactionPolicy
from memory.store.store import Store
from tests.activities.loopback import loopback, openai_chat
from tests.processes import WorkerProcess
from worker.settings import Settings


async def test_worker_killed_during_compaction_commits_it_exactly_once(
    client: Client, app_url: str, store: Store, tmp_path: Path
) -> None:
    queue = f"crash-{uuid.uuid4()}"
    address = client.service_client.config.target_host
    with loopback() as provider:
        provider.reply(openai_chat("never delivered"), delay=60)  # the worker dies first
        provider.reply(openai_chat("Decisions: resend order 4711 [m3]."))
        worker = WorkerProcess({
            "LONGTHREAD_TEMPORAL_ADDRESS": address, "LONGTHREAD_TASK_QUEUE": queue,
            "LONGTHREAD_DATABASE_URL": app_url, "LONGTHREAD_SUMMARIZER": "openai",
            "LONGTHREAD_SUMMARY_MODEL": "local-llm", "LONGTHREAD_OPENAI_API_KEY": "k",
            "LONGTHREAD_OPENAI_BASE_URL": provider.url + "/v1"}, tmp_path / "worker.log")
        worker.start()
        try:
            lt = Longthread(client, Settings(task_queue=queue),
                            CompactionPolicy(context_window=100_000, preserve_recent=2),
                            store=store)
            conv = await lt.conversation("crash", tenant="acme")
            await conv.append_many([{"id": f"m{i}", "role": "user",
                                     "content": f"Order 4711 note number {i}."}
                                    for i in range(20)])
            compaction = asyncio.create_task(conv.compact(focus="order"))
            await provider.first_request()  # the summary request is in flight
            worker.kill()
            assert not compaction.done()
            worker.start()
            async with asyncio.timeout(120):
                record = await compaction
            ledger = await conv.ledger()
            window = [m.id for m in await conv.window()]
        finally:
            worker.stop()

    assert record is not None and record.summary is not None
    assert record.summary.content == "Decisions: resend order 4711 [m3]."
    assert len(provider.requests) == 2
    assert [r.id for r in ledger] == [record.id]
    assert await store.ledger("acme", "crash") == ledger
    assert record.covered_ids == tuple(f"m{i}" for i in range(18))
    assert window == ["m18", "m19"]
    archived = [m.id for m in await store.all_messages("acme", "crash")]
    assert archived == [f"m{i}" for i in range(20)]
