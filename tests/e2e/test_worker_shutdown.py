"""`longthread worker` stops gracefully on SIGTERM and SIGINT: it polls no more, lets the
activity it runs finish (up to LONGTHREAD_SHUTDOWN_GRACE_SECONDS), says `worker stopped` and
exits 0, so a deploy (`docker stop`, Kubernetes, systemd) is not a crash. A second signal
leaves at once.

The activity in flight is a compaction whose summary comes from a loopback OpenAI server that
answers a few seconds after the request arrives: the signal lands while the request is open,
deterministically. Before, the worker died at once and the compaction was retried only after
its activity timeout, by another worker."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from temporalio.client import Client

from longthread.client import Longthread
from memory.policy import CompactionPolicy
from memory.store.store import Store
from tests.activities.loopback import Loopback, loopback, openai_chat
from tests.processes import ROOT, WorkerProcess
from worker.settings import Settings

SUMMARY = "Decisions: resend order 4711 [m3]."


def _env(client: Client, app_url: str, queue: str, tmp_path: Path,
         provider: Loopback | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LONGTHREAD_")}
    env |= {"LONGTHREAD_TEMPORAL_ADDRESS": client.service_client.config.target_host,
            "LONGTHREAD_TASK_QUEUE": queue, "LONGTHREAD_DATABASE_URL": app_url,
            "LONGTHREAD_DATA_DIR": str(tmp_path / "nodata")}
    if provider is not None:
        env |= {"LONGTHREAD_SUMMARIZER": "openai", "LONGTHREAD_SUMMARY_MODEL": "local-llm",
                "LONGTHREAD_OPENAI_API_KEY": "k",
                "LONGTHREAD_OPENAI_BASE_URL": provider.url + "/v1"}
    return env


def _spawn(env: dict[str, str], log: Path) -> subprocess.Popen[str]:
    with log.open("w") as sink:
        return subprocess.Popen([sys.executable, "-m", "longthread", "-v", "worker"], cwd=ROOT,
                                env=env, stdout=subprocess.PIPE, stderr=sink, text=True)


@asynccontextmanager
async def worker_process(env: dict[str, str], log: Path) -> AsyncIterator[subprocess.Popen[str]]:
    """`longthread -v worker` with its stdout piped, once it polls; killed if a test leaves
    it running."""
    proc = _spawn(env, log)
    try:
        async with asyncio.timeout(120):
            while "worker polling" not in log.read_text():
                assert proc.poll() is None, f"worker exited: {log.read_text()[-2000:]}"
                await asyncio.sleep(0.1)
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


async def _exit(proc: subprocess.Popen[str], timeout: float) -> tuple[int, str, float]:
    """Its exit code, its stdout, and how long it took to exit from now."""
    started = time.monotonic()
    out, _ = await asyncio.to_thread(proc.communicate, timeout=timeout)
    return proc.returncode, out, time.monotonic() - started


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
async def test_an_idle_worker_stops_at_once_and_exits_0(
    client: Client, app_url: str, tmp_path: Path, sig: signal.Signals
) -> None:
    log = tmp_path / "worker.log"
    env = _env(client, app_url, f"stop-{uuid.uuid4()}", tmp_path)
    async with worker_process(env, log) as proc:
        proc.send_signal(sig)
        code, out, took = await _exit(proc, 30)
    assert code == 0, log.read_text()[-2000:]
    assert out.strip() == "worker stopped"
    assert "Traceback" not in log.read_text()
    assert f"worker: {sig.name}, stopping" in log.read_text()
    assert took < 10, f"an idle worker took {took:.1f} s to stop"


async def test_sigterm_lets_the_compaction_in_flight_finish_before_the_worker_exits(
    client: Client, app_url: str, store: Store, tmp_path: Path
) -> None:
    queue, log = f"graceful-{uuid.uuid4()}", tmp_path / "worker.log"
    with loopback() as provider:
        provider.reply(openai_chat(SUMMARY), delay=4)  # answered while the worker stops
        env = _env(client, app_url, queue, tmp_path, provider)
        async with worker_process(env, log) as proc:
            lt = Longthread(client, Settings(task_queue=queue),
                            CompactionPolicy(context_window=100_000, preserve_recent=2),
                            store=store)
            conv = await lt.conversation("graceful", tenant="acme")
            await conv.append_many([{"id": f"m{i}", "role": "user",
                                     "content": f"Order 4711 note number {i}."}
                                    for i in range(20)])
            compaction = asyncio.create_task(conv.compact(focus="order"))
            await provider.first_request()  # the summary request is in flight
            proc.send_signal(signal.SIGTERM)
            code, out, took = await _exit(proc, 60)
        assert code == 0, log.read_text()[-2000:]
        assert out.strip() == "worker stopped"
        assert took >= 2, f"exited {took:.1f} s after SIGTERM: it did not wait for the activity"
        assert took < 25, f"took {took:.1f} s: more than the grace period"
        # The activity finished in the stopping worker: the record is committed, with the
        # summary the provider sent, before any other worker ran.
        committed = await store.ledger("acme", "graceful")
        assert [r.summary.content if r.summary else None for r in committed] == [SUMMARY]
        assert not compaction.done()  # its workflow task waits for the next worker

        restarted = WorkerProcess(env, tmp_path / "restarted.log")
        restarted.start()
        try:
            async with asyncio.timeout(120):
                record = await compaction
        finally:
            restarted.stop()
    assert record is not None and record.id == committed[0].id
    assert len(provider.requests) == 1  # never summarized twice: nothing was abandoned
    assert await store.ledger("acme", "graceful") == committed


async def test_a_second_signal_during_the_grace_period_exits_at_once(
    client: Client, app_url: str, store: Store, tmp_path: Path
) -> None:
    queue, log = f"impatient-{uuid.uuid4()}", tmp_path / "worker.log"
    with loopback() as provider:
        provider.reply(openai_chat("never delivered"), delay=60)
        env = _env(client, app_url, queue, tmp_path, provider)
        async with worker_process(env, log) as proc:
            # A small window: the appends alone start a compaction, in the background.
            lt = Longthread(client, Settings(task_queue=queue),
                            CompactionPolicy(context_window=300, preserve_recent=2),
                            store=store)
            conv = await lt.conversation("impatient", tenant="acme")
            await conv.append_many([{"id": f"m{i}", "role": "user",
                                     "content": f"Order 4711 note number {i}, to keep."}
                                    for i in range(30)])
            await provider.first_request()  # the summary request is in flight
            proc.send_signal(signal.SIGTERM)
            async with asyncio.timeout(30):
                while "stopping" not in log.read_text():
                    await asyncio.sleep(0.05)
            await asyncio.sleep(0.5)
            assert proc.poll() is None  # waiting for the activity
            proc.send_signal(signal.SIGTERM)
            code, out, took = await _exit(proc, 30)
    assert code == 128 + signal.SIGTERM, log.read_text()[-2000:]
    assert took < 5, f"took {took:.1f} s after the second signal"
    assert "second signal" in log.read_text()
    assert out == ""
