"""A worker with LONGTHREAD_METRICS_ADDRESS serves Prometheus metrics: Temporal's worker
metrics and longthread's own, which must agree with what the archive holds."""

from __future__ import annotations

import asyncio
import re
import socket
import urllib.request
import uuid

import pytest
from temporalio.client import Client

from activities.conversation import ConversationActivities
from longthread.client import Longthread
from memory.errors import InvalidInputError
from memory.policy import CompactionPolicy
from memory.store.store import Store
from worker.main import build_worker, connect_client, metrics_runtime
from worker.settings import Settings

SAMPLE = re.compile(r"^([a-z_]+)\{([^}]*)\} ([0-9.e+]+)$", re.M)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def _scrape(address: str) -> str:
    def get() -> str:
        with urllib.request.urlopen(f"http://{address}/metrics", timeout=10) as response:
            return str(response.read().decode())
    return await asyncio.to_thread(get)


def _total(text: str, name: str, **labels: str) -> float:
    """The sum of `name`'s samples whose labels include `labels`."""
    total = 0.0
    for metric, label_text, value in SAMPLE.findall(text):
        found = dict(re.findall(r'(\w+)="([^"]*)"', label_text))
        if metric == name and all(found.get(k) == v for k, v in labels.items()):
            total += float(value)
    return total


async def test_worker_metrics_count_what_the_archive_holds(
    client: Client, activities: ConversationActivities, store: Store
) -> None:
    address = f"127.0.0.1:{_free_port()}"
    queue = f"metrics-{uuid.uuid4()}"
    session = f"metered-{uuid.uuid4().hex[:8]}"
    settings = Settings(temporal_address=client.service_client.config.target_host,
                        task_queue=queue, metrics_address=address)
    worker_client = await connect_client(settings, metrics=True)
    async with build_worker(worker_client, queue, activities.all(), max_cached_workflows=0):
        lt = Longthread(client, settings, CompactionPolicy(context_window=600, preserve_recent=4),
                        store=store, embedder=activities.embedder)
        conv = await lt.conversation(session, tenant="acme")
        messages = [{"id": f"m{i}", "role": ("user", "assistant")[i % 2],
                     "content": f"Turn {i}: the refund for order {4700 + i} is still open."}
                    for i in range(60)]
        for start in range(0, 60, 10):
            await conv.append_many(messages[start:start + 10])
        again = await conv.append_many(messages[:10])  # a retried batch: all duplicates
        assert again.duplicates == 10
        await conv.settle(timeout=120)
        text = await _scrape(address)
        await conv.close()

    assert _total(text, "longthread_messages_stored", outcome="appended") == 60, text
    assert _total(text, "longthread_messages_stored", outcome="duplicate") == 10
    assert _total(text, "longthread_messages_embedded") == 60
    ledger = await store.ledger("acme", session)
    assert ledger  # 60 turns in a 600-token window: compactions ran
    assert _total(text, "longthread_compactions", kind="completed") == len(ledger)
    assert _total(text, "longthread_compactions", kind="started") >= len(ledger)
    assert _total(text, "longthread_compaction_duration_count") == len(ledger)
    assert _total(text, "longthread_compaction_tokens_freed") > 0
    # The SDK's own worker metrics are on the same endpoint.
    assert _total(text, "temporal_workflow_completed", task_queue=queue) + _total(
        text, "temporal_activity_execution_latency_count", task_queue=queue) > 0, text
    assert "session" not in {k for _, labels, _ in SAMPLE.findall(text)
                             for k in re.findall(r"(\w+)=", labels)}  # never a label


def test_a_taken_metrics_address_is_refused_naming_the_setting() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        address = f"127.0.0.1:{taken.getsockname()[1]}"
        with pytest.raises(InvalidInputError, match=re.escape(
                f"LONGTHREAD_METRICS_ADDRESS: cannot serve metrics at '{address}': Failed "
                "starting Prometheus exporter")):
            metrics_runtime(address)
