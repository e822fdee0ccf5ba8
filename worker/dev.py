"""`longthread dev`: Temporal, Postgres, migrations and a worker, as one supervised unit.

A lock file in the data dir makes a second `dev` on the same dir refuse clearly. Ctrl-C or
SIGTERM stops the worker, then Temporal (its whole process group), then Postgres, so nothing
is left behind; both servers keep their data in the data dir, so a restart loses nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import signal
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from memory.errors import LongthreadError
from memory.store.migrations import migrate
from worker.main import run_worker
from worker.settings import Settings
from worker.stack import EmbeddedPostgres, TemporalDevServer

__all__ = ["StackAlreadyRunningError", "StackInfo", "embedded_stack", "run_dev"]

log = logging.getLogger(__name__)


class StackAlreadyRunningError(LongthreadError):
    pass


def _lock(data_dir: Path) -> IO[str]:
    data_dir.mkdir(parents=True, exist_ok=True)
    handle = (data_dir / "dev.lock").open("a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        owner = handle.read().strip() or "another process"
        handle.close()
        raise StackAlreadyRunningError(
            f"longthread dev is already running on {data_dir} (pid {owner}); stop it first"
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(str(os.getpid()))
    handle.flush()
    return handle


@dataclass(frozen=True)
class StackInfo:
    temporal_address: str
    ui_url: str | None
    database_url: str
    schema_version: int
    data_dir: Path


def _check_port_free(port: int) -> None:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            raise LongthreadError(
                f"temporal_address: port {port} on 127.0.0.1 is in use; set "
                "LONGTHREAD_TEMPORAL_ADDRESS to a free one (and LONGTHREAD_TEMPORAL_UI_PORT)"
            ) from None


@contextlib.asynccontextmanager
async def embedded_stack(settings: Settings) -> AsyncIterator[StackInfo]:
    """Postgres (unless database_url is set), migrations and Temporal; all stopped on exit."""
    data_dir = settings.data_dir.resolve()
    host, _, port = settings.temporal_address.rpartition(":")
    if host not in ("127.0.0.1", "localhost"):
        raise LongthreadError("temporal_address: the embedded stack binds to 127.0.0.1 only")
    _check_port_free(int(port))
    postgres = EmbeddedPostgres(data_dir / "postgres")
    temporal = TemporalDevServer(data_dir / "temporal", port=int(port),
                                 ui_port=settings.temporal_ui_port)
    try:
        url = settings.database_url or postgres.start()
        version = await migrate(url, settings.embedding_dim)
        temporal.start()
        await temporal.wait_ready()
        yield StackInfo(temporal.address, temporal.ui_url, url, version, data_dir)
    finally:
        temporal.stop()
        postgres.stop()


async def run_dev(settings: Settings, announce: Callable[[str], None] = print) -> None:
    """Run the stack and a worker until SIGINT or SIGTERM."""
    data_dir = settings.data_dir.resolve()
    lock = _lock(data_dir)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        async with embedded_stack(settings) as info:
            worker_settings = settings.model_copy(update={"database_url": info.database_url})
            worker = asyncio.create_task(run_worker(worker_settings, stop))
            (data_dir / "stack.json").write_text(json.dumps(
                {"temporal": info.temporal_address, "ui": info.ui_url,
                 "database_url": info.database_url, "pid": os.getpid()}))
            announce(f"ready temporal={info.temporal_address} ui={info.ui_url} "
                     f"postgres={info.database_url} schema=v{info.schema_version} "
                     f"data_dir={data_dir}")
            waiter = asyncio.create_task(stop.wait())
            await asyncio.wait([worker, waiter], return_when=asyncio.FIRST_COMPLETED)
            stop.set()
            await worker  # re-raises a crashed worker's error
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        with contextlib.suppress(FileNotFoundError):
            (data_dir / "stack.json").unlink()
        lock.close()
        announce("stopped")
