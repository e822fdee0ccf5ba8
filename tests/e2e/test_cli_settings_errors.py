"""A bad LONGTHREAD_* setting is bad input like any other: one line per problem naming the
environment variable (not pydantic's field) and its limit, exit 2, no traceback, for every
command and before it contacts anything. The settings cases need no stack (Temporal is
pointed at a closed port, so a command that got as far as connecting would exit 3); the
undo-of-an-undo case runs against the test stack."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest
from temporalio.client import Client
from temporalio.worker import Worker

from longthread.client import Longthread
from memory.assembly import ASSEMBLY_VERSION
from memory.compaction import ENGINE_VERSION
from memory.store.migrations import MIGRATIONS

ROOT = Path(__file__).resolve().parents[2]


def cli(tmp_path: Path, env: dict[str, str], *args: str,
        cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    """The CLI as a user runs it, with only the LONGTHREAD_* settings the test gives."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("LONGTHREAD_")}
    return subprocess.run(
        [sys.executable, "-m", "longthread", *args], cwd=cwd, capture_output=True, text=True,
        timeout=120, env={**clean, "LONGTHREAD_TEMPORAL_ADDRESS": "127.0.0.1:1",
                          "LONGTHREAD_DATA_DIR": str(tmp_path / "nodata"), **env})


CASES = [
    (["sessions"], "LONGTHREAD_CONTEXT_WINDOW", "abc",
     "must be an integer from 256 to 2000000 (got 'abc')"),
    (["worker"], "LONGTHREAD_CONTEXT_WINDOW", "0",
     "must be an integer from 256 to 2000000 (got '0')"),
    (["dev"], "LONGTHREAD_CONTEXT_WINDOW", "999999999999",
     "must be an integer from 256 to 2000000 (got '999999999999')"),
    (["mcp"], "LONGTHREAD_EMBEDDER", "foo", "must be one of local, mpnet, openai (got 'foo')"),
    (["export", "s", "out.jsonl"], "LONGTHREAD_SUMMARIZER", "gpt",
     "must be one of extractive, anthropic, openai (got 'gpt')"),
    (["ledger", "s"], "LONGTHREAD_PRESERVE_RECENT", "-1",
     "must be an integer from 0 to 10000 (got '-1')"),
    (["uncompact", "s", "c1"], "LONGTHREAD_IDLE_TIMEOUT_SECONDS", "0",
     "must be a number more than 0 (got '0')"),
    (["db", "setup"], "LONGTHREAD_AUDIT_UI_PORT", "http", "must be an integer from 0 to 65535 "
     "(got 'http')"),
]


@pytest.mark.parametrize(("args", "name", "value", "problem"), CASES,
                         ids=[f"{c[0][0]}-{c[1]}={c[2]}" for c in CASES])
def test_a_bad_setting_is_one_line_naming_the_variable(
    tmp_path: Path, args: list[str], name: str, value: str, problem: str
) -> None:
    done = cli(tmp_path, {name: value}, *args)
    assert done.returncode == 2, done.stderr[-2000:]
    assert "Traceback" not in done.stderr, done.stderr[-2000:]
    assert done.stderr.strip() == f"error: {name}: {problem}", done.stderr[-2000:]
    assert not done.stdout


HINT = ("percent-encode '%', '@', ':' and '/' in the user and password ('%' as %25, '@' as "
        "%40)")


@pytest.mark.parametrize(("url", "problem"), [
    ("postgresql://app:Zq7Xk%zzYv@127.0.0.1:5999/db",
     "is not a PostgreSQL URL or keyword string libpq can read"),
    ("postgresql://app:Zq7@Yv9@127.0.0.1:5999/db",
     "has an '@' or '/' in its user or password that is not percent-encoded"),
    ("postgresql://app:Zq7/Yv9@127.0.0.1:5999/db",
     "has an '@' or '/' in its user or password that is not percent-encoded")])
def test_a_database_url_libpq_misreads_is_refused_without_its_password(
    tmp_path: Path, url: str, problem: str
) -> None:
    """A password holding '%' or '@' unencoded: psycopg's error and the pool's log quoted it,
    and `db erase`/`db setup` printed a traceback (session 25's security review)."""
    for args, name in ((["sessions"], "LONGTHREAD_DATABASE_URL"),
                       (["db", "erase", "s1", "--yes"], "LONGTHREAD_ADMIN_DATABASE_URL")):
        done = cli(tmp_path, {name: url}, *args)
        shown = "LONGTHREAD_ADMIN_DATABASE_URL (--admin-url)" if "db" in args else name
        assert done.returncode == 2, done.stderr[-2000:]
        assert done.stderr.strip() == f"error: {shown}: {problem}; {HINT}", done.stderr
        assert "Zq7" not in done.stderr + done.stdout and "Yv" not in done.stderr + done.stdout


def test_every_bad_setting_gets_its_own_line_also_from_dot_env(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("LONGTHREAD_CONTEXT_WINDOW=100\nOTHER_SDK_KEY=ignored\n")
    done = cli(tmp_path, {"LONGTHREAD_EMBEDDER": "foo"}, "sessions", cwd=tmp_path)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert done.stderr.splitlines() == [
        "error: LONGTHREAD_EMBEDDER: must be one of local, mpnet, openai (got 'foo')",
        "error: LONGTHREAD_CONTEXT_WINDOW: must be an integer from 256 to 2000000 (got '100')"]


def test_a_long_value_is_not_echoed_and_help_still_works(tmp_path: Path) -> None:
    done = cli(tmp_path, {"LONGTHREAD_CONTEXT_WINDOW": "x" * 200}, "context", "s")
    assert done.returncode == 2, done.stderr[-2000:]
    assert done.stderr.strip() == ("error: LONGTHREAD_CONTEXT_WINDOW: must be an integer "
                                   "from 256 to 2000000"), done.stderr[-2000:]
    done = cli(tmp_path, {"LONGTHREAD_CONTEXT_WINDOW": "abc"}, "sessions", "--help")
    assert done.returncode == 0 and "Usage" in done.stdout, done.stderr[-2000:]


def test_a_misspelled_setting_is_named_with_the_one_meant(tmp_path: Path) -> None:
    """It used to be ignored, and the default used: LONGTHREAD_TEMPORL_ADDRESS ran against
    127.0.0.1:7233 without a word."""
    done = cli(tmp_path, {"LONGTHREAD_TEMPORL_ADDRESS": "temporal:7233"}, "sessions")
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert done.stderr.strip() == ("error: LONGTHREAD_TEMPORL_ADDRESS: not a longthread "
                                   "setting (did you mean LONGTHREAD_TEMPORAL_ADDRESS?)")
    assert not done.stdout
    # In .env too, even empty (the CLI copies only non-empty values to the environment),
    # each on its own line beside the bad values; a name like no setting gets no guess.
    (tmp_path / ".env").write_text("LONGTHREAD_FOO=1\nLONGTHREAD_CONTEXT_WINDW=\n"
                                   "LONGTHREAD_CONTEXT_WINDOW=100\nOTHER_SDK_KEY=ignored\n")
    done = cli(tmp_path, {}, "worker", cwd=tmp_path)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert done.stderr.splitlines() == [
        "error: LONGTHREAD_CONTEXT_WINDW: not a longthread setting (in .env; did you mean "
        "LONGTHREAD_CONTEXT_WINDOW?)",
        "error: LONGTHREAD_FOO: not a longthread setting (in .env; see .env.example for every "
        "setting)",
        "error: LONGTHREAD_CONTEXT_WINDOW: must be an integer from 256 to 2000000 (got '100')"]


def test_names_read_outside_the_settings_are_not_refused(tmp_path: Path) -> None:
    """The commands' own variables and the test and benchmark knobs, which reach the CLI in
    the environment of the runs that set them: the command goes on, to find no stack."""
    from longthread.settings import OTHER_VARIABLES

    done = cli(tmp_path, dict.fromkeys(OTHER_VARIABLES, "1"), "sessions")
    assert done.returncode == 3, done.stderr[-2000:]
    assert "not a longthread setting" not in done.stderr


def test_version_prints_the_package_version_whatever_the_settings(tmp_path: Path) -> None:
    from importlib.metadata import version

    for env in ({}, {"LONGTHREAD_CONTEXT_WINDOW": "abc", "LONGTHREAD_TYPO": "x"}):
        done = cli(tmp_path, env, "--version")
        assert done.returncode == 0, done.stderr[-2000:]
        assert done.stdout.strip() == (
            f"longthread {version('longthread')} (schema {len(MIGRATIONS)}, {ENGINE_VERSION}, "
            f"assembly {ASSEMBLY_VERSION})")
        assert not done.stderr


async def acli(env: dict[str, str], *args: str) -> tuple[int, str]:
    """The CLI without blocking the event loop the test's worker runs on."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "longthread", *args, cwd=ROOT, env={**os.environ, **env},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    _, err = await asyncio.wait_for(proc.communicate(), 180)
    return proc.returncode or 0, err.decode()


async def test_uncompacting_an_undo_record_says_it_is_an_undo(
    lt: Longthread, client: Client, task_queue: str, app_url: str, worker: Worker,
    tmp_path: Path
) -> None:
    conv = await lt.conversation("undone", "acme")
    await conv.append_many([{"id": f"m{i}", "role": ("user", "assistant")[i % 2],
                             "content": f"Turn {i}: the plumber comes on Tuesday and costs "
                                        f"{100 + i} EUR; Biscuit the dog goes to the beach."}
                            for i in range(40)])
    compacted = await conv.try_compact(4, None)
    assert compacted.record is not None
    undo = await conv.uncompact(compacted.record.id)
    env = {"LONGTHREAD_TEMPORAL_ADDRESS": client.service_client.config.target_host,
           "LONGTHREAD_DATABASE_URL": app_url, "LONGTHREAD_TASK_QUEUE": task_queue,
           "LONGTHREAD_DATA_DIR": str(tmp_path / "nodata"), "COLUMNS": "200"}
    code, err = await acli(env, "uncompact", "undone", undo.id, "--tenant", "acme")
    assert code == 2 and "Traceback" not in err, err[-2000:]
    assert err.strip() == (
        f"error: record_id: {undo.id!r} is an undo of {compacted.record.id}, not a compaction: "
        "an undo cannot itself be undone"), err
    code, err = await acli(env, "uncompact", "undone", "c99", "--tenant", "acme")
    assert code == 2 and "record_id: no compaction 'c99' in this session" in err, err
