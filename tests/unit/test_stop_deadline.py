"""A stop that hangs past the grace period is forced (an SRE's user test: with the archive
down, a SIGTERMed worker was still running 66 s into a 25 s grace period, and `longthread dev`
ignored SIGINT, SIGINT and SIGTERM for two minutes). Run in a child process: the deadline
leaves with `os._exit`."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time

CHILD = textwrap.dedent("""
    import asyncio, os, signal
    import worker.main as main
    from longthread.settings import Settings

    main.STOP_MARGIN_SECONDS = 0.5

    async def hang() -> None:
        stop = asyncio.Event()
        with main.stopping_on_signals(stop, Settings(shutdown_grace_seconds=0.5), "worker"):
            os.kill(os.getpid(), signal.SIGTERM)
            await stop.wait()
            await asyncio.sleep(30)  # a shutdown that never ends
        await asyncio.sleep(1.5)  # past the deadline, had the stop not cancelled it
        print("left normally", flush=True)

    asyncio.run(hang())
""")


def test_a_stop_that_hangs_is_forced_after_the_grace_period_and_margin() -> None:
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True,
                          timeout=25)
    took = time.monotonic() - started
    assert done.returncode == 128 + 15, done.stderr
    assert "worker: SIGTERM, stopping" in done.stderr
    assert "worker: still stopping after 1 s, leaving without waiting" in done.stderr
    assert "left normally" not in done.stdout
    assert took < 20


def test_a_stop_that_ends_in_time_cancels_the_deadline() -> None:
    child = CHILD.replace("await asyncio.sleep(30)  # a shutdown that never ends",
                          "await asyncio.sleep(0.1)")
    done = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True,
                          timeout=25)
    assert done.returncode == 0, done.stderr
    assert "left normally" in done.stdout and "still stopping" not in done.stderr
