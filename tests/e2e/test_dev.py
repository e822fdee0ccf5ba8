"""`longthread dev` as a user runs it: a real subprocess, real signals, real restarts."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from longthread.client import Longthread
from worker.settings import Settings
from worker.stack import free_port

READY_TIMEOUT = 90.0


def _start_dev(data_dir: Path, env: dict[str, str]) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "longthread", "dev", "--data-dir", str(data_dir)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
    )
    assert proc.stdout is not None
    deadline = time.monotonic() + READY_TIMEOUT
    seen = []
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        seen.append(line)
        if "ready" in line:
            return proc, line
    proc.kill()
    raise AssertionError(f"dev never printed ready: {''.join(seen)}")


def _descendants(pid: int) -> list[psutil.Process]:
    children: list[psutil.Process] = psutil.Process(pid).children(recursive=True)
    return children


def _stop(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGTERM)
    proc.wait(60)


@pytest.fixture
def dev_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    yield {**os.environ, "LONGTHREAD_TEMPORAL_ADDRESS": f"127.0.0.1:{free_port()}",
           "LONGTHREAD_TEMPORAL_UI_PORT": str(free_port()),
           "LONGTHREAD_TASK_QUEUE": "dev-test"}


def _postgres_pids(data_dir: Path) -> list[int]:
    return [p.pid for p in psutil.process_iter(["name", "cmdline"])
            if p.info["name"] == "postgres" and str(data_dir) in " ".join(p.info["cmdline"] or [])]


def test_dev_ready_refuses_second_survives_restart_and_leaves_nothing(
    tmp_path: Path, dev_env: dict[str, str]
) -> None:
    data_dir = tmp_path / "stack"
    started = time.monotonic()
    proc, ready = _start_dev(data_dir, dev_env)
    assert time.monotonic() - started < READY_TIMEOUT
    assert dev_env["LONGTHREAD_TEMPORAL_ADDRESS"] in ready
    children = _descendants(proc.pid)
    assert _postgres_pids(data_dir), "embedded postgres should be running"

    second = subprocess.run(
        [sys.executable, "-m", "longthread", "dev", "--data-dir", str(data_dir)],
        capture_output=True, text=True, env=dev_env, timeout=60,
    )
    assert second.returncode != 0
    assert "already running" in second.stderr

    settings = Settings(temporal_address=dev_env["LONGTHREAD_TEMPORAL_ADDRESS"],
                        task_queue="dev-test")

    async def write() -> None:
        lt = await Longthread.connect(settings)
        conv = await lt.conversation("survivor", tenant="acme")
        await conv.append({"id": "a1", "role": "user", "content": "remember me"})

    asyncio.run(write())
    _stop(proc)
    assert proc.returncode == 0
    for child in children:
        assert not child.is_running() or child.status() == psutil.STATUS_ZOMBIE
    assert _postgres_pids(data_dir) == []

    proc, _ = _start_dev(data_dir, dev_env)
    try:
        async def read() -> list[str]:
            lt = await Longthread.connect(settings)
            conv = await lt.conversation("survivor", tenant="acme")
            return [m.content for m in await conv.window()]

        assert asyncio.run(read()) == ["remember me"]
    finally:
        _stop(proc)
    assert _postgres_pids(data_dir) == []
