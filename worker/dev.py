"""`longthread dev`: Temporal, Postgres, migrations and a worker, as one supervised unit.

A lock file in the data dir makes a second `dev` on the same dir refuse clearly. Ctrl-C or
SIGTERM stops the worker, then Temporal (its whole process group), then Postgres, so nothing
is left behind; both servers keep their data in the data dir, so a restart loses nothing.
If the supervisor is killed outright, its watchdog stops both servers (worker/lifeline.py),
and a restart on the same data dir can begin at once: it waits for that, reaps anything still
left, and does not mistake the TIME_WAIT sockets of the crash for a server.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import socket
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import psutil

from memory.errors import LongthreadError
from memory.store.migrations import migrate
from worker.lifeline import Watchdog, reap
from worker.main import run_worker, stopping_on_signals
from worker.settings import Settings
from worker.stack import EmbeddedPostgres, TemporalDevServer

__all__ = ["StackAlreadyRunningError", "StackInfo", "embedded_stack", "run_dev"]

log = logging.getLogger(__name__)

LOCK_WAIT_SECONDS = 30.0


class StackAlreadyRunningError(LongthreadError):
    pass


def _alive(pid: int) -> bool:
    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False


async def _lock(data_dir: Path, wait: float = LOCK_WAIT_SECONDS) -> IO[str]:
    """Take the data dir's lock, so that one stack at a time runs on it.

    The supervisor holds the lock and so does its watchdog, which keeps it after a crash until
    it has stopped the old stack. So a lock held for a dead supervisor means "still stopping",
    which is worth a wait; a lock held for a live one means another `dev` runs: refuse at once.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    handle = (data_dir / "dev.lock").open("a+")
    deadline = time.monotonic() + wait
    while True:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            handle.seek(0)
            owner = handle.read().strip()
            stopping = owner.isdigit() and not _alive(int(owner))
            if not stopping or time.monotonic() > deadline:
                handle.close()
                state = (f"is still stopping the stack that pid {owner} started; see "
                         f"{data_dir / 'watchdog.log'}" if stopping else
                         f"is already running on {data_dir} (pid {owner or 'unknown'}); "
                         "stop it first")
                raise StackAlreadyRunningError(f"longthread dev {state}") from None
            if owner:
                log.info("waiting for the stack of dead pid %s to stop", owner)
            await asyncio.sleep(0.1)
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


def _listener(port: int) -> str:
    """Who listens on the port, for the error message, if this user may know."""
    with contextlib.suppress(psutil.Error, OSError):
        for conn in psutil.net_connections("tcp"):
            if conn.laddr and conn.laddr.port == port and conn.status == psutil.CONN_LISTEN:
                name = psutil.Process(conn.pid).name() if conn.pid else "?"
                return f" by pid {conn.pid} ({name})"
    return ""


def _check_port_free(port: int, setting: str) -> None:
    """Refuse a port that something listens on, before Temporal fails on it obscurely.

    The probe binds with SO_REUSEADDR, as the Temporal server itself does, so the TIME_WAIT
    sockets that a crash leaves behind for about 60 s do not count as "in use".
    """
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            raise LongthreadError(
                f"{setting}: port {port} on 127.0.0.1 is in use{_listener(port)}; set "
                f"LONGTHREAD_{setting.upper()} to a free one"
            ) from None


@contextlib.asynccontextmanager
async def embedded_stack(settings: Settings) -> AsyncIterator[StackInfo]:
    """Postgres (unless database_url is set), migrations and Temporal; all stopped on exit,
    and by the watchdog if this process dies without a chance to stop them."""
    data_dir = settings.data_dir.resolve()
    host, _, port = settings.temporal_address.rpartition(":")
    if host not in ("127.0.0.1", "localhost"):
        raise LongthreadError("temporal_address: the embedded stack binds to 127.0.0.1 only")
    lock = await _lock(data_dir)
    try:
        postgres = EmbeddedPostgres(data_dir / "postgres")
        temporal = TemporalDevServer(data_dir / "temporal", port=int(port),
                                     ui_port=settings.temporal_ui_port)
        # Servers left by a stack whose supervisor and watchdog both died (kill -9 of all).
        reaped = await asyncio.to_thread(reap, temporal.db_file, postgres.pgdata)
        if reaped:
            log.warning("stopped servers a previous stack left running: pids %s", reaped)
        _check_port_free(int(port), "temporal_address")
        if settings.temporal_ui_port:
            _check_port_free(settings.temporal_ui_port, "temporal_ui_port")
        if settings.audit_ui_port:
            _check_port_free(settings.audit_ui_port, "audit_ui_port")
        watchdog = Watchdog(temporal.db_file, postgres.pgdata, data_dir / "watchdog.log",
                            keep_fds=(lock.fileno(),), remove=(data_dir / "stack.json",))
        with contextlib.ExitStack() as stops:  # run last-in first, each despite the others' errors
            watchdog.start()
            stops.callback(watchdog.stop)
            stops.callback(postgres.stop)
            url = settings.database_url or postgres.start()
            version = await migrate(url, settings.dimensions, settings.embedding_model)
            stops.callback(temporal.stop)
            temporal.start()
            await temporal.wait_ready()
            yield StackInfo(temporal.address, temporal.ui_url, url, version, data_dir)
    finally:
        lock.close()


async def run_dev(settings: Settings, announce: Callable[[str], None] = print) -> None:
    """Run the stack and a worker until SIGINT or SIGTERM."""
    data_dir = settings.data_dir.resolve()
    stop = asyncio.Event()
    refused = False
    try:
        with stopping_on_signals(stop, settings, "dev"):
            await _serve_stack(settings, data_dir, stop, announce)
    except StackAlreadyRunningError:
        refused = True  # nothing of ours ran, so nothing "stopped"
        raise
    finally:
        if not refused:
            announce("stopped")


async def _serve_stack(settings: Settings, data_dir: Path, stop: asyncio.Event,
                       announce: Callable[[str], None]) -> None:
    """The embedded stack, its worker and the audit page, until `stop`."""
    async with embedded_stack(settings) as info:
        worker_settings = settings.model_copy(update={"database_url": info.database_url})
        worker = asyncio.create_task(run_worker(worker_settings, stop))
        from longthread.ui import start as start_audit_ui  # the page's web stack, only here

        audit = (await start_audit_ui(worker_settings, port=settings.audit_ui_port)
                 if settings.audit_ui_port else None)
        stack_file = data_dir / "stack.json"
        stack_file.write_text(json.dumps(
            {"temporal": info.temporal_address, "ui": info.ui_url,
             "audit": audit.url if audit else None,
             "database_url": info.database_url, "pid": os.getpid()}))
        try:
            announce(f"ready temporal={info.temporal_address} ui={info.ui_url} "
                     f"audit={audit.url if audit else None} "
                     f"postgres={info.database_url} schema=v{info.schema_version} "
                     f"data_dir={data_dir}")
            waiter = asyncio.create_task(stop.wait())
            await asyncio.wait([worker, waiter], return_when=asyncio.FIRST_COMPLETED)
            stop.set()
            await worker  # re-raises a crashed worker's error
        finally:
            stack_file.unlink(missing_ok=True)
            if audit is not None:
                await audit.stop()
