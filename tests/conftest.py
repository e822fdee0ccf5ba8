"""Shared fixtures: the real embedded Postgres and Temporal dev server, once per test session.

Both bind only to what they own (a unix socket in a temp dir, free loopback ports), so the
suite never collides with a developer's running `longthread dev`.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import make_conninfo
from psycopg.rows import DictRow, dict_row
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Worker

from activities.conversation import ConversationActivities
from activities.providers.embedders import LocalEmbedder, local_embedder
from longthread.client import Longthread
from memory.policy import CompactionPolicy
from memory.store.db import open_pool
from memory.store.migrations import setup
from memory.store.roles import create_login_role
from memory.store.store import Store
from worker.main import build_worker
from worker.settings import Settings
from worker.stack import EmbeddedPostgres, TemporalDevServer, free_port


@pytest.fixture(scope="session")
def pg_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    postgres = EmbeddedPostgres(tmp_path_factory.mktemp("pg"))
    yield postgres.start()
    postgres.stop()


@pytest.fixture(scope="session")
async def migrated_url(pg_url: str) -> str:
    """The admin's (superuser's) URL, after migrating: for tests that probe the database."""
    async with await psycopg.AsyncConnection.connect(pg_url, autocommit=True) as conn:
        await setup(conn, 384)
        await create_login_role(conn, APP_USER, "tester-password")
    return pg_url


APP_USER = "longthread_tester"


@pytest.fixture(scope="session")
def app_url(migrated_url: str) -> str:
    """What the store, the workers and the CLI connect with: a least-privilege login, a member
    of longthread_app only, so row-level security holds for everything they do."""
    return make_conninfo(migrated_url, user=APP_USER, password="tester-password")


@pytest.fixture
async def db(migrated_url: str) -> AsyncIterator[psycopg.AsyncConnection[DictRow]]:
    async with await psycopg.AsyncConnection.connect(
        migrated_url, autocommit=True, row_factory=dict_row
    ) as conn:
        yield conn


async def started_temporal(path: Path, **options: Any) -> TemporalDevServer:
    """A dev server on a port picked free here. Another process may bind that port before the
    server does (free_port only probes it); `wait_ready` retries the ports the CLI picks, but a
    port we named fails each retry alike: so a start that fails is tried again on a new one."""
    for attempt in range(3):
        server = TemporalDevServer(path / f"try{attempt}", port=free_port(), ui_port=None,
                                   **options)
        server.start()
        try:
            await server.wait_ready()
            return server
        except RuntimeError:
            server.stop()
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


@pytest.fixture(scope="session")
async def temporal(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[TemporalDevServer]:
    server = await started_temporal(Path(tmp_path_factory.mktemp("temporal")))
    yield server
    server.stop()


@pytest.fixture(scope="session")
async def client(temporal: TemporalDevServer) -> Client:
    return await Client.connect(temporal.address, data_converter=pydantic_data_converter)


@pytest.fixture
def task_queue() -> str:
    return f"test-{uuid.uuid4()}"


@pytest.fixture(scope="session")
def embedder() -> LocalEmbedder:
    """The local embedder the product picks (ONNX MiniLM here), loaded once per session."""
    embedder = local_embedder()
    embedder.model()
    return embedder  # type: ignore[return-value]  # both kinds embed alike for the tests


@pytest.fixture(scope="session")
async def store(app_url: str) -> AsyncIterator[Store]:
    pool = await open_pool(app_url)
    yield Store(pool)
    await pool.close()


@pytest.fixture(scope="session")
def activities(store: Store, embedder: LocalEmbedder) -> ConversationActivities:
    return ConversationActivities(store, embedder)


@pytest.fixture
async def worker(
    client: Client, task_queue: str, activities: ConversationActivities
) -> AsyncIterator[Worker]:
    """A worker on a fresh queue that replays every task (no workflow cache)."""
    async with build_worker(client, task_queue, activities.all(),
                            max_cached_workflows=0) as running:
        yield running


@pytest.fixture
def lt(client: Client, task_queue: str, store: Store, embedder: LocalEmbedder) -> Longthread:
    return Longthread(client, Settings(task_queue=task_queue), store=store, embedder=embedder)


LtFactory = Callable[..., Longthread]


@pytest.fixture
def make_lt(task_queue: str, store: Store, embedder: LocalEmbedder) -> LtFactory:
    """A client with its own policy and settings, sharing the session's store and embedder."""
    def make(client: Client, window: int = 400, preserve_recent: int = 4,
             **settings: Any) -> Longthread:
        return Longthread(client, Settings(task_queue=task_queue, **settings),
                          CompactionPolicy(context_window=window,
                                           preserve_recent=preserve_recent),
                          store=store, embedder=embedder)
    return make


@pytest.fixture(scope="session")
async def short_history_client(
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Client]:
    """A dev server that suggests continue-as-new after 150 events, so it happens in seconds
    and, even with every update batched into few workflow tasks, several times per test."""
    server = await started_temporal(
        Path(tmp_path_factory.mktemp("temporal-short")),
        dynamic_config={"limit.historyCount.suggestContinueAsNew": "150"})
    yield await Client.connect(server.address, data_converter=pydantic_data_converter)
    server.stop()
