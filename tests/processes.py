"""Run `longthread worker` and `longthread dev` as real subprocesses, so tests can SIGKILL them
like a crash would, and see what they leave behind."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil

__all__ = ["DevProcess", "WorkerProcess", "postgres_pids", "postmaster_pid", "running",
           "wait_gone"]

ROOT = Path(__file__).resolve().parents[1]


class WorkerProcess:
    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env = {**os.environ, **env}
        self.log = log
        self.proc: subprocess.Popen[str] | None = None
        self.starts = 0

    def start(self, timeout: float = 120.0) -> None:
        """Start a worker and wait until it polls its task queue."""
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "longthread", "-v", "worker"], cwd=ROOT, env=self.env,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.starts += 1
        ready = threading.Event()
        proc = self.proc

        def pump() -> None:
            assert proc.stderr is not None
            with self.log.open("a") as sink:
                for line in proc.stderr:
                    sink.write(line)
                    if "worker polling" in line:
                        ready.set()

        threading.Thread(target=pump, daemon=True).start()
        deadline = time.monotonic() + timeout
        while not ready.wait(0.2):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"worker did not start; see {self.log}")

    def kill(self) -> None:
        """SIGKILL: no cleanup, no goodbye, exactly like a crashed host."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()


class DevProcess:
    """`longthread dev` as a user runs it: a subprocess whose output is read for `ready`."""

    def __init__(self, data_dir: Path, env: dict[str, str]) -> None:
        self.data_dir = data_dir
        self.env = {**os.environ, **env}
        self.proc: subprocess.Popen[str] | None = None
        self.output: list[str] = []

    def start(self, timeout: float = 90.0) -> str:
        """Start it and return its `ready` line; fail with its output if it never comes."""
        self.output = []
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "longthread", "dev", "--data-dir", str(self.data_dir)],
            cwd=ROOT, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        ready = threading.Event()
        proc = self.proc

        def pump() -> None:  # a thread, so a silent process cannot stall the deadline
            assert proc.stdout is not None
            for line in proc.stdout:
                self.output.append(line)
                if line.startswith("ready"):
                    ready.set()

        threading.Thread(target=pump, daemon=True).start()
        deadline = time.monotonic() + timeout
        while not ready.wait(0.1):
            if proc.poll() is not None or time.monotonic() > deadline:
                self.kill()
                raise AssertionError(f"dev did not print ready within {timeout:.0f} s:\n"
                                     + "".join(self.output))
        return next(line for line in self.output if line.startswith("ready"))

    def __enter__(self) -> DevProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        """Whatever a test asserted, no stack of it outlives it."""
        if self.proc is not None:
            self.stop()

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def kill(self) -> None:
        """SIGKILL the supervisor only: what it started must go by itself."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self, timeout: float = 60.0) -> int:
        """SIGTERM, as Ctrl-C or a service manager would; returns the exit code."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.proc.returncode

    def stack_pids(self) -> set[int]:
        """Every process of the running stack: the supervisor's descendants (the watchdog,
        Temporal), and the postmaster named in postmaster.pid with its backends."""
        pids = {child.pid for child in psutil.Process(self.pid).children(recursive=True)}
        postmaster = postmaster_pid(self.data_dir)
        if postmaster is not None:
            pids.add(postmaster)
            with contextlib.suppress(psutil.NoSuchProcess):
                pids |= {child.pid for child in psutil.Process(postmaster).children()}
        return pids


def postmaster_pid(data_dir: Path) -> int | None:
    """The pid in the dev stack's postmaster.pid, if the file exists."""
    try:
        return int((data_dir / "postgres" / "pg" / "postmaster.pid").read_text().split()[0])
    except (FileNotFoundError, IndexError, ValueError):
        return None


def running(pids: set[int]) -> set[int]:
    """The pids still running: a zombie has finished, it only waits for its parent to reap it."""
    left = set()
    for pid in pids:
        with contextlib.suppress(psutil.NoSuchProcess):
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                left.add(pid)
    return left


def wait_gone(pids: set[int], timeout: float) -> tuple[set[int], float]:
    """Wait until none of the pids runs; return those still running, and the seconds taken."""
    started = time.monotonic()
    while (left := running(pids)) and time.monotonic() - started < timeout:
        time.sleep(0.05)
    return left, time.monotonic() - started


def postgres_pids(data_dir: Path) -> list[int]:
    """Postmasters whose command line names this stack's data dir."""
    return [p.pid for p in psutil.process_iter(["name", "cmdline"])
            if p.info["name"] == "postgres" and str(data_dir) in " ".join(p.info["cmdline"] or [])]
