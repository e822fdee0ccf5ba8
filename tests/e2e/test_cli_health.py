"""`longthread health`, a readiness probe: each component's line, exit 0 only when Temporal
answers, workers poll the task queue and the archive is current with this configuration's
vectors; every check runs (and is bounded) whatever the others found."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import psycopg
import pytest
from temporalio.client import Client
from temporalio.runtime import Runtime, TelemetryConfig
from temporalio.worker import Worker

from longthread.health import Check, check_health
from longthread.settings import Settings
from memory.build import build_label
from memory.store.migrations import MIGRATIONS
from tests.e2e.test_cli import cli, env
from tests.store.old_schema import database_at
from worker.main import build_worker

__all__ = ["env"]  # the fixture, imported for its use here


def _settings(tmp_path: Path, **given: object) -> Settings:
    return Settings(data_dir=tmp_path / "nodata", **given)  # type: ignore[arg-type]


def _by_name(checks: list[Check]) -> dict[str, Check]:
    assert [c.name for c in checks] == ["temporal", "workers", "archive"]
    return {c.name: c for c in checks}


async def test_a_serving_deployment_passes_every_check(
    env: dict[str, str], worker: Worker, task_queue: str
) -> None:
    code, out, err = await cli(env, "health")
    assert code == 0, out + err
    lines = out.strip().splitlines()
    assert [line.split()[:2] for line in lines] == [["ok", "temporal"], ["ok", "workers"],
                                                    ["ok", "archive"]]
    assert f"1 workflow and 1 activity pollers on task queue '{task_queue}'" in lines[1]
    assert f"backlog 0; build {build_label()} (" in lines[1], lines[1]
    assert f"schema {len(MIGRATIONS)}" in lines[2]
    code, out, err = await cli(env, "health", "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["ok"] is True and [c["ok"] for c in report["checks"]] == [True] * 3


async def test_workers_of_two_builds_are_named_as_such(
    client: Client, app_url: str, tmp_path: Path, task_queue: str, worker: Worker
) -> None:
    """A rolling upgrade (or a stale worker left behind): the upgrade test of session 31 could
    not tell an old worker from a new one, both answering `longthread 0.1.0`."""
    settings = _settings(tmp_path, temporal_address=client.service_client.config.target_host,
                         database_url=app_url, task_queue=task_queue)
    # Another process's worker (the SDK refuses two on one queue in one runtime).
    other = await Client.connect(client.service_client.config.target_host,
                                 runtime=Runtime(telemetry=TelemetryConfig()))
    async with build_worker(other, task_queue, identity="4242@old-host"):  # an older build
        detail = ""
        for _ in range(50):  # until the second worker has polled both of its queues
            detail = _by_name(await check_health(settings))["workers"].detail
            if detail.startswith("2 workflow and 2 activity pollers"):
                break
            await asyncio.sleep(0.2)
    assert detail.endswith(f"; workers of 2 builds: a build before identities named one; "
                           f"{build_label()}"), detail


async def test_a_queue_no_worker_polls_fails_naming_the_queue(
    client: Client, app_url: str, tmp_path: Path
) -> None:
    settings = _settings(tmp_path, temporal_address=client.service_client.config.target_host,
                         database_url=app_url, task_queue="nobody-polls-this")
    checks = _by_name(await check_health(settings))
    assert checks["temporal"].ok and checks["archive"].ok
    assert not checks["workers"].ok
    assert checks["workers"].detail.startswith(
        "0 workflow and 0 activity pollers on task queue 'nobody-polls-this', backlog 0: no "
        "worker has polled it")


@pytest.fixture
async def silent_port() -> AsyncIterator[int]:
    """A port that accepts connections and never answers: a hung server."""
    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # until the client gives up
        writer.close()

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()


async def test_a_hung_temporal_times_out_and_the_archive_is_still_checked(
    silent_port: int, app_url: str, tmp_path: Path
) -> None:
    settings = _settings(tmp_path, temporal_address=f"127.0.0.1:{silent_port}",
                         database_url=app_url)
    started = asyncio.get_running_loop().time()
    checks = _by_name(await check_health(settings, timeout=1.0))
    assert asyncio.get_running_loop().time() - started < 10
    assert checks["temporal"] == Check("temporal", False, "no answer within 1 s",
                                       checks["temporal"].ms)
    assert checks["workers"].detail == "not checked: Temporal did not answer"
    assert checks["archive"].ok, checks["archive"]


async def test_an_unreachable_archive_fails_without_its_password(tmp_path: Path) -> None:
    code, out, _ = await cli({"LONGTHREAD_DATABASE_URL":
                              "postgresql://nobody:s3cret-pw@127.0.0.1:1/x",
                              "LONGTHREAD_TEMPORAL_ADDRESS": "127.0.0.1:1",
                              "LONGTHREAD_DATA_DIR": str(tmp_path / "nodata")},
                             "health", "--timeout", "3")
    assert code == 1
    lines = " ".join(out.split())
    assert "FAIL temporal" in lines and "FAIL workers not checked" in lines
    assert "FAIL archive archive unreachable (nobody@127.0.0.1:1/x)" in lines
    assert "s3cret-pw" not in out


async def test_an_archive_behind_or_of_another_model_fails_saying_what_to_do(
    pg_url: str, tmp_path: Path
) -> None:
    known = len(MIGRATIONS)
    async with database_at(pg_url, 0) as url:  # never migrated: no longthread_meta yet
        detail = _by_name(await check_health(_settings(tmp_path, database_url=url,
                                                       temporal_address="127.0.0.1:1")))
        assert detail["archive"].detail.endswith(
            f"schema at version 0, this code's is {known}: start a worker (it migrates) or "
            "run `longthread db setup`"), detail["archive"]
    async with database_at(pg_url, known, dim=768) as url:  # `db setup` records no model
        detail = _by_name(await check_health(_settings(tmp_path, database_url=url,
                                                       temporal_address="127.0.0.1:1")))
        assert not detail["archive"].ok
        assert detail["archive"].detail.endswith(
            "the archive was created for 768-dimensional embeddings, not 384 "
            "(LONGTHREAD_EMBEDDER and LONGTHREAD_EMBEDDING_DIM must match the archive)")
    async with database_at(pg_url, known - 1) as url:
        detail = _by_name(await check_health(_settings(tmp_path, database_url=url,
                                                       temporal_address="127.0.0.1:1")))
        assert not detail["archive"].ok
        assert detail["archive"].detail.endswith(
            f"schema at version {known - 1}, this code's is {known}: start a worker (it "
            "migrates) or run `longthread db setup`")
    async with database_at(pg_url, known) as url:
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            await conn.execute("INSERT INTO longthread_meta VALUES ('embedder', "
                               "'all-mpnet-base-v2')")
        detail = _by_name(await check_health(_settings(tmp_path, database_url=url,
                                                       temporal_address="127.0.0.1:1")))
        assert not detail["archive"].ok
        assert "the archive holds vectors made by 'all-mpnet-base-v2', and these settings " \
               "make them with 'all-MiniLM-L6-v2'; two models' vectors cannot be compared. " \
               "Set LONGTHREAD_EMBEDDER" in detail["archive"].detail
