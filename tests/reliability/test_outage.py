"""A provider outage: the summarizer's and the chat model's server is down for five minutes.
Appends keep being accepted at once; compaction falls back to extractive with the reason in
the ledger and the events; generate() fails within its documented bound; no workflow task
fails. (LONGTHREAD_OUTAGE_SECONDS shortens the outage for a quick local run.)"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
import uuid

import pytest
from temporalio.client import Client

from activities.conversation import ConversationActivities
from activities.providers.embedders import LocalEmbedder
from activities.providers.llm import OpenAIChat, OpenAISummarizer
from longthread.client import Longthread
from memory.errors import LongthreadError
from memory.policy import CompactionPolicy
from memory.store.store import Store
from worker.main import build_worker
from worker.settings import Settings
from worker.stack import free_port

pytestmark = pytest.mark.slow
OUTAGE_SECONDS = float(os.environ.get("LONGTHREAD_OUTAGE_SECONDS", "300"))
GENERATE_BOUND_SECONDS = 30.0  # COMPLETE_CHAT: 4 attempts, backoff 1 + 2 + 4 s, then it fails


async def test_five_minutes_without_the_provider(client: Client, store: Store,
                                                 embedder: LocalEmbedder) -> None:
    dead = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there: connection refused
    queue = f"outage-{uuid.uuid4()}"
    acts = ConversationActivities(store, embedder, OpenAISummarizer("k", "down-llm", dead),
                                  OpenAIChat("k", "down-llm", dead), max_summarizer_failures=3)
    lt = Longthread(client, Settings(task_queue=queue),
                    CompactionPolicy(context_window=600, preserve_recent=4), store=store,
                    embedder=embedder)
    latencies: list[float] = []
    async with build_worker(client, queue, acts.all()):
        conv = await lt.conversation("outage", tenant="acme")
        deadline = time.monotonic() + OUTAGE_SECONDS
        n = 0
        while time.monotonic() < deadline:
            started = time.monotonic()
            await conv.append_many([{"id": f"m{n + k}", "role": ("user", "assistant")[k % 2],
                                     "content": f"Order {4700 + n + k} is late; the customer "
                                                "asked for a refund of 10 EUR."}
                                    for k in range(5)])
            latencies.append(time.monotonic() - started)
            n += 5
            window = await conv.context("refund", max_tokens=300)
            assert window.tokens <= 300
            await asyncio.sleep(2.0)
        started = time.monotonic()
        record = await conv.compact(preserve_recent=2)
        manual_seconds = time.monotonic() - started
        started = time.monotonic()
        with pytest.raises(LongthreadError, match="provider unreachable"):
            await conv.generate("Where is my order?")
        generate_seconds = time.monotonic() - started
        await conv.append({"id": "after", "role": "user", "content": "still here"})
        await conv.settle(timeout=120)
        ledger = await conv.ledger()
        events = await conv.events()
        history = await conv.handle.fetch_history()

    await acts.aclose()

    assert max(latencies) < 5.0 and statistics.median(latencies) < 1.0, latencies
    assert record is not None and record.strategy == "extractive"
    assert record.fallback == ("extractive: down-llm failed 3 times (last: ProviderUnavailable: "
                               "provider unreachable: APIConnectionError)")
    assert manual_seconds < 60, manual_seconds
    assert generate_seconds < GENERATE_BOUND_SECONDS, generate_seconds
    summarized = [r for r in ledger if r.summary is not None]
    assert summarized and all(r.fallback for r in summarized), "every summary fell back"
    failed = [e for e in events if e.kind == "failed"]
    assert failed and all("unreachable" in (e.error or "") for e in failed)
    assert not any(e.HasField("workflow_task_failed_event_attributes") for e in history.events)
    # Every append, generate()'s user turn (kept though the reply failed) and the last one.
    assert await store.count("acme", "outage") == n + 2
