"""The crash drill of issue 14, from a fresh data dir, through the CLI a user has:

1. SIGKILL only the `dev` supervisor, in the middle of an import;
2. within 10 s, none of the stack's processes is left;
3. start it again at once: it is ready within 30 s;
4. re-send everything: every message appears exactly once once the session has settled.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import psycopg
import pytest

from tests.processes import ROOT, DevProcess, postgres_pids, running, wait_gone
from worker.stack import free_port

MESSAGES = 3000
REAP_SECONDS = 10.0
RESTART_SECONDS = 30.0
STARTUP_SECONDS = 120.0  # the first start, on a loaded machine
SETTLE_SECONDS = 300.0  # archiving thousands of messages with a local embedder
TENANT, SESSION = "drill", "session_1"

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


def _cli(env: dict[str, str], *args: str, timeout: float = 180.0) -> str:
    done = subprocess.run([sys.executable, "-m", "longthread", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"longthread {' '.join(args)}: {done.stdout}{done.stderr}"
    return done.stdout


def _stored(data_dir: Path) -> int:
    """Messages of the session in the store so far: the evidence that the import is under way.
    It reads as pgserver's superuser (trust auth on the socket), whom row-level security lets by,
    whatever role `dev` gives the worker."""
    url = json.loads((data_dir / "stack.json").read_text())["database_url"]
    with psycopg.connect(url, user="postgres", autocommit=True) as conn:
        row = conn.execute("SELECT count(*) FROM messages WHERE tenant = %s AND session = %s",
                           (TENANT, SESSION)).fetchone()
    return int(row[0]) if row else 0


def _finish(importer: subprocess.Popen[str]) -> None:
    """The interrupted import fails (no stack), or gets through against the new one; either way
    it must be over before the re-send, so it cannot blur the count."""
    try:
        importer.wait(60)
    except subprocess.TimeoutExpired:
        importer.kill()
        importer.wait()


def _exported(env: dict[str, str], out: Path) -> list[dict[str, object]]:
    _cli(env, "export", SESSION, str(out), "--tenant", TENANT)
    lines = [json.loads(line) for line in out.read_text().splitlines() if line.strip()]
    return [item for item in lines if "format" not in item and "ledger_record" not in item]


def _ended(importer: subprocess.Popen[str]) -> str:
    output = importer.stdout.read() if importer.stdout else ""
    return f"the import ended (code {importer.returncode}) before the kill could land: {output}"


def test_sigkill_mid_import_leaves_nothing_restarts_at_once_and_loses_nothing(
    tmp_path: Path
) -> None:
    data_dir = tmp_path / "stack"  # fresh: nothing of an earlier run
    env = {**os.environ, "LONGTHREAD_TEMPORAL_ADDRESS": f"127.0.0.1:{free_port()}",
           "LONGTHREAD_TEMPORAL_UI_PORT": str(free_port()),
           "LONGTHREAD_AUDIT_UI_PORT": str(free_port()),
           "LONGTHREAD_TASK_QUEUE": "crash-drill", "LONGTHREAD_DATA_DIR": str(data_dir)}
    sent = {f"m{i}": f"message {i} of the drill, about topic {i % 41}" for i in range(MESSAGES)}
    source = tmp_path / "messages.jsonl"
    source.write_text("".join(
        json.dumps({"id": ident, "role": "user" if i % 2 == 0 else "assistant",
                    "content": text}) + "\n" for i, (ident, text) in enumerate(sent.items())))

    with DevProcess(data_dir, env) as dev:
        dev.start(STARTUP_SECONDS)
        # 1. A slow import (small batches), and the kill lands once the store shows it under way.
        importer = subprocess.Popen(
            [sys.executable, "-m", "longthread", "import", SESSION, str(source), "--tenant", TENANT,
             "--batch", "10"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True)
        try:
            deadline = time.monotonic() + 120
            while _stored(data_dir) < 50:
                assert importer.poll() is None, _ended(importer)
                assert time.monotonic() < deadline, "the import stored nothing in 120 s"
                time.sleep(0.2)
            stack = dev.stack_pids()
            assert len(stack) >= 3, f"expected watchdog, Temporal and Postgres: {stack}"
            assert importer.poll() is None, _ended(importer)
        except BaseException:
            _finish(importer)
            raise
        dev.kill()

        # 2. Everything the supervisor started goes by itself.
        left, took = wait_gone(stack, REAP_SECONDS)
        assert not left, f"still running {REAP_SECONDS:.0f} s after the kill: {sorted(left)}"
        print(f"drill: {len(stack)} processes gone {took:.1f} s after the SIGKILL")

        # 3. Again, at once, on the same data dir.
        started = time.monotonic()
        try:
            dev.start(RESTART_SECONDS)
            ready_after = time.monotonic() - started
        finally:
            _finish(importer)
        assert ready_after < RESTART_SECONDS
        print(f"drill: ready again {ready_after:.1f} s after the restart")
        # 4. Re-send everything; each message is there exactly once.
        resent = time.monotonic()
        _cli(env, "import", SESSION, str(source), "--tenant", TENANT)
        print(f"drill: re-sent in {time.monotonic() - resent:.1f} s")
        out = tmp_path / "export.jsonl"
        deadline = time.monotonic() + SETTLE_SECONDS
        exports = 0
        while True:
            exports += 1
            exported = _exported(env, out)
            counts = Counter(str(item["id"]) for item in exported)
            twice = sorted(ident for ident, n in counts.items() if n > 1)
            assert not twice, f"stored more than once: {twice[:10]}"
            if len(counts) >= MESSAGES or time.monotonic() > deadline:
                break
        print(f"drill: settled and exported after {time.monotonic() - resent:.1f} s, "
              f"{exports} export(s)")
        assert set(counts) == set(sent), f"missing: {sorted(set(sent) - set(counts))[:10]}"
        assert {str(item["id"]): item["content"] for item in exported} == sent
        restarted = dev.stack_pids()
        assert dev.stop() == 0, "".join(dev.output)
        assert running(restarted) == set()
        assert postgres_pids(data_dir) == []
