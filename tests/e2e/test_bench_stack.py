"""A benchmark killed outright leaves no servers and no data behind (`bench.harness`).

Before the watchdog, a bench stopped by SIGTERM or a timeout's SIGKILL ran no `finally`, and
its embedded Postgres kept running, with its data directory, until someone stopped it by hand.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.processes import postgres_pids, wait_gone

READY_TIMEOUT = 120.0

# The bench's own stack, with an embedder that needs no model: the test is about the servers.
CHILD = """
import asyncio, sys
from pathlib import Path
from bench.harness import bench_stack

class Zeros:
    name, dim = "zeros", 384
    async def embed(self, texts):
        return [[0.0] * self.dim for _ in texts]

async def main() -> None:
    async with bench_stack(embedder=Zeros(), tmp=Path(sys.argv[1])):
        print("ready", flush=True)
        await asyncio.Event().wait()

asyncio.run(main())
"""


def test_a_killed_bench_leaves_no_postgres_temporal_or_directory(tmp_path: Path) -> None:
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(tmp_path)],
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        line = child.stdout.readline()  # blocks until the stack serves, or the child ends
        assert line.strip() == "ready", f"the bench stack did not start (exit {child.poll()})"
        (root,) = tmp_path.glob("lt-bench-*")
        postmasters = set(postgres_pids(root))
        assert postmasters, "expected the bench's Postgres running"
        temporal = {int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()
                    and _cmdline_names(p, str(root / "t"))}
        assert temporal, "expected the bench's Temporal server running"
        child.send_signal(signal.SIGKILL)
        child.wait(10)
        left, _ = wait_gone(postmasters | temporal, 30)
        assert not left, f"servers outlived the killed bench: {left}"
        deadline = time.monotonic() + 10
        while root.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not root.exists(), "the killed bench's directory was left behind"
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(10)


def _cmdline_names(proc: Path, needle: str) -> bool:
    """Whether `proc` is a server started on `needle`; the watchdog names the same paths in
    its arguments, so it is left out (the test is about the servers it reaps)."""
    try:
        cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return False
    return needle in cmdline and "worker.lifeline" not in cmdline
