"""Process wiring: connect to Temporal and run the worker with its activities."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from temporalio.client import Client
from temporalio.worker import Worker

from activities.providers.embedders import LocalEmbedder, OnnxEmbedder
from longthread.codec import data_converter
from longthread.settings import Settings
from memory.errors import InvalidInputError
from memory.store.db import open_pool
from memory.store.roles import ensure_schema
from worker.wiring import build_activities
from workflows.conversation import ConversationWorkflow

__all__ = ["build_worker", "connect_client", "run_worker"]

log = logging.getLogger(__name__)


async def connect_client(settings: Settings) -> Client:
    key = settings.payload_key.get_secret_value() if settings.payload_key else None
    return await Client.connect(
        settings.temporal_address,
        namespace=settings.temporal_namespace,
        data_converter=data_converter(key),
    )


def build_worker(
    client: Client,
    task_queue: str,
    activities: Sequence[Callable[..., Any]] = (),
    **options: Any,
) -> Worker:
    """A worker for every workflow longthread defines; CPU-bound activities get threads."""
    return Worker(
        client,
        task_queue=task_queue,
        workflows=[ConversationWorkflow],
        activities=list(activities),
        activity_executor=ThreadPoolExecutor(max_workers=8) if activities else None,
        **options,
    )


async def run_worker(settings: Settings, stop: asyncio.Event | None = None) -> None:
    """Run until `stop` is set (or forever): the production entry point's body."""
    if not settings.database_url:
        raise InvalidInputError("LONGTHREAD_DATABASE_URL", "is required to run a worker (or "
                                "run it where `longthread dev` runs, on the same "
                                "LONGTHREAD_DATA_DIR, to join that stack)")
    await ensure_schema(settings.database_url, settings.dimensions, settings.embedding_model)
    pool = await open_pool(settings.database_url)
    acts = None
    try:
        acts = build_activities(settings, pool)
        if isinstance(acts.embedder, LocalEmbedder | OnnxEmbedder):
            await asyncio.to_thread(acts.embedder.model)  # load once, before polling
        client = await connect_client(settings)
        async with build_worker(client, settings.task_queue, acts.all()):
            log.info("worker polling task queue %s on %s", settings.task_queue,
                     settings.temporal_address)
            await (stop.wait() if stop else asyncio.Event().wait())
    finally:
        if acts is not None:
            await acts.aclose()
        await pool.close()
