"""`longthread dev` as a user runs it: a real subprocess, real signals, real restarts."""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import psutil
import pytest

from longthread.client import Longthread
from memory.errors import LongthreadError
from tests.processes import DevProcess, postgres_pids, postmaster_pid, running, wait_gone
from worker.dev import StackAlreadyRunningError, _check_port_free, _lock
from worker.settings import Settings
from worker.stack import TemporalDevServer, free_port

READY_TIMEOUT = 90.0
RESTART_TIMEOUT = 30.0  # issue 14: a restart after a crash is ready within 30 s


@pytest.fixture
def dev_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    yield {**os.environ, "LONGTHREAD_TEMPORAL_ADDRESS": f"127.0.0.1:{free_port()}",
           "LONGTHREAD_TEMPORAL_UI_PORT": str(free_port()),
           "LONGTHREAD_AUDIT_UI_PORT": str(free_port()),
           "LONGTHREAD_TASK_QUEUE": "dev-test"}


def test_dev_ready_refuses_second_survives_restart_and_leaves_nothing(
    tmp_path: Path, dev_env: dict[str, str]
) -> None:
    data_dir = tmp_path / "stack"
    with DevProcess(data_dir, dev_env) as dev:
        ready = dev.start(READY_TIMEOUT)
        assert dev_env["LONGTHREAD_TEMPORAL_ADDRESS"] in ready
        stack = dev.stack_pids()
        assert postgres_pids(data_dir), "embedded postgres should be running"

        second = DevProcess(data_dir, dev_env)
        with pytest.raises(AssertionError, match="already running"):
            second.start(60)
        assert second.proc is not None and second.proc.returncode != 0

        published = json.loads((data_dir / "stack.json").read_text())  # what the CLI reads
        assert published["temporal"] == dev_env["LONGTHREAD_TEMPORAL_ADDRESS"]
        # `dev` serves the audit page too, on its own port.
        assert published["audit"].rstrip("/").endswith(":" + dev_env["LONGTHREAD_AUDIT_UI_PORT"])
        with urllib.request.urlopen(published["audit"], timeout=30) as page:
            assert page.status == 200 and b"Sessions" in page.read()
        settings = Settings(temporal_address=published["temporal"], task_queue="dev-test",
                            database_url=published["database_url"])
        # A second worker for the same stack finds it through the data dir, as other
        # commands do (it used to demand LONGTHREAD_DATABASE_URL).
        extra = subprocess.Popen(
            [sys.executable, "-m", "longthread", "-v", "worker"], cwd=tmp_path,
            env={**dev_env, "LONGTHREAD_DATA_DIR": str(data_dir)}, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE, text=True)
        try:
            assert extra.stderr is not None
            polling = ""
            deadline = time.monotonic() + 120
            while "worker polling task queue dev-test" not in polling:
                line = extra.stderr.readline()
                assert line or extra.poll() is None, f"worker exited: {polling[-2000:]}"
                assert time.monotonic() < deadline, polling[-2000:]
                polling += line
        finally:
            extra.terminate()
            extra.wait(30)

        async def write() -> None:
            lt = await Longthread.connect(settings)
            conv = await lt.conversation("survivor", tenant="acme")
            await conv.append({"id": "a1", "role": "user", "content": "remember me"})

        asyncio.run(write())
        assert dev.stop() == 0
        assert running(stack) == set()
        assert postgres_pids(data_dir) == []

        async def read() -> list[str]:
            lt = await Longthread.connect(settings)
            conv = await lt.conversation("survivor", tenant="acme")
            return [m.content for m in await conv.window()]

        dev.start(READY_TIMEOUT)
        try:
            assert asyncio.run(read()) == ["remember me"]
            # A crash, and a restart at once: while the old watchdog is still stopping the old
            # stack, the new supervisor waits for it rather than fail or run beside it.
            crashed = dev.stack_pids()
            dev.kill()
            started = time.monotonic()
            dev.start(RESTART_TIMEOUT)
            assert time.monotonic() - started < RESTART_TIMEOUT
            assert running(crashed) == set()
            assert asyncio.run(read()) == ["remember me"]
        finally:
            dev.stop()
        assert postgres_pids(data_dir) == []


def test_port_probe_ignores_time_wait_but_sees_a_listener() -> None:
    """A crash leaves TIME_WAIT sockets on the server's port for about 60 s; they must not
    block a restart, while a live listener must still be refused."""
    port = free_port()
    listener = socket.create_server(("127.0.0.1", port))
    client = socket.create_connection(("127.0.0.1", port))
    accepted, _ = listener.accept()
    with pytest.raises(LongthreadError, match=f"port {port} on 127.0.0.1 is in use"):
        _check_port_free(port, "temporal_address")
    accepted.close()  # the server side closes first, so its end enters TIME_WAIT
    client.close()
    listener.close()
    time.sleep(0.1)
    with socket.socket() as plain, pytest.raises(OSError):
        plain.bind(("127.0.0.1", port))  # what the old probe saw: "in use", with no server
    _check_port_free(port, "temporal_address")


def test_restart_reaps_a_stack_whose_supervisor_and_watchdog_both_died(
    tmp_path: Path, dev_env: dict[str, str]
) -> None:
    """kill -9 of the supervisor and its watchdog at once: Temporal still dies (it has a
    parent-death signal), Postgres is orphaned, and so is a Temporal server that an older
    version left on the data dir. The next start reaps both and serves."""
    data_dir = tmp_path / "stack"
    with DevProcess(data_dir, dev_env) as dev:
        dev.start(READY_TIMEOUT)
        children = psutil.Process(dev.pid).children()
        watchdog = [c for c in children if "worker.lifeline" in c.cmdline()]
        temporal = [c for c in children if "start-dev" in c.cmdline()]
        assert len(watchdog) == 1 and len(temporal) == 1, children
        postmaster = postmaster_pid(data_dir)
        assert postmaster is not None
        watchdog[0].send_signal(signal.SIGKILL)
        dev.kill()

        left, _ = wait_gone({temporal[0].pid}, 10)
        assert not left, "Temporal outlived its supervisor: PR_SET_PDEATHSIG did not fire"
        assert running({postmaster}) == {postmaster}, "expected Postgres orphaned (no watchdog)"
        port = int(dev_env["LONGTHREAD_TEMPORAL_ADDRESS"].rpartition(":")[2])
        stale = TemporalDevServer(data_dir.resolve() / "temporal", port=port, ui_port=None)
        stale.start()  # an orphan Temporal on this data dir, holding the port
        try:
            started = time.monotonic()
            dev.start(RESTART_TIMEOUT)
            assert time.monotonic() - started < RESTART_TIMEOUT
            assert stale.process is not None
            assert stale.process.wait(5) is not None  # reaped by the new supervisor
            assert running({postmaster}) == set()
            restarted = dev.stack_pids()
        finally:
            dev.stop()
            stale.kill()
        assert running(restarted) == set()
        assert postgres_pids(data_dir) == [], "a clean stop after a crash must stop Postgres too"


def test_lock_waits_for_a_dead_supervisors_watchdog_but_refuses_a_live_one(
    tmp_path: Path
) -> None:
    """The lock held for a dead supervisor (its watchdog still reaping) is waited for; one held
    for a live supervisor is refused at once, naming it."""
    dead = subprocess.Popen(["true"])
    dead.wait()
    (tmp_path / "dev.lock").write_text(str(dead.pid))
    holder = (tmp_path / "dev.lock").open("a+")
    fcntl.flock(holder, fcntl.LOCK_EX | fcntl.LOCK_NB)

    async def release_soon() -> IO[str]:
        loop = asyncio.get_running_loop()
        loop.call_later(0.5, holder.close)
        started = loop.time()
        taken = await _lock(tmp_path, wait=10)
        assert loop.time() - started >= 0.4
        return taken

    asyncio.run(release_soon()).close()

    (tmp_path / "dev.lock").write_text(str(dead.pid))
    holder = (tmp_path / "dev.lock").open("a+")
    fcntl.flock(holder, fcntl.LOCK_EX | fcntl.LOCK_NB)
    with pytest.raises(StackAlreadyRunningError, match="still stopping"):
        asyncio.run(_lock(tmp_path, wait=0.3))
    holder.seek(0)
    holder.truncate()
    holder.write(str(os.getpid()))  # a live owner
    holder.flush()
    with pytest.raises(StackAlreadyRunningError, match=f"already running .*pid {os.getpid()}"):
        asyncio.run(_lock(tmp_path, wait=10))
    holder.close()
