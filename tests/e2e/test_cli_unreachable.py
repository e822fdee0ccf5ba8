"""A command that cannot reach what it needs says so in one line, naming what it tried (never
a password), and exits 3, as README's exit codes promise: `worker` (its database, or
Temporal), `db setup` and `db erase` (the admin's database). They printed 40-line tracebacks.
And a worker, or `db setup`, refuses an archive a newer longthread migrated (exit 1)."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import psycopg

from memory.store.migrations import MIGRATIONS
from tests.store.old_schema import database_at

ROOT = Path(__file__).resolve().parents[2]
DEAD_DB = "postgresql://nobody:s3cret-pw@127.0.0.1:1/x"


async def cli(tmp_path: Path, env: dict[str, str], *args: str) -> tuple[int, str, str]:
    """The CLI with only the LONGTHREAD_* settings given (Temporal at a closed port unless
    the test names one), in a directory of its own (no .env)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("LONGTHREAD_")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "longthread", *args, cwd=tmp_path,
        env={**clean, "LONGTHREAD_TEMPORAL_ADDRESS": "127.0.0.1:1",
             "LONGTHREAD_DATA_DIR": str(tmp_path / "nodata"), **env},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 180)
    return proc.returncode or 0, out.decode(), err.decode()


def _one_line(err: str) -> str:
    assert "Traceback" not in err, err[-3000:]
    lines = err.strip().splitlines()
    assert len(lines) == 1, err[-3000:]
    assert "s3cret-pw" not in err
    return lines[0]


async def test_a_worker_whose_database_is_down_says_so_in_one_line(tmp_path: Path) -> None:
    code, out, err = await cli(tmp_path, {"LONGTHREAD_DATABASE_URL": DEAD_DB}, "worker")
    assert code == 3
    assert _one_line(err).startswith(
        "error: archive database unreachable (nobody@127.0.0.1:1/x): connection failed")
    assert not out


async def test_a_worker_whose_temporal_is_down_says_so_in_one_line(
    tmp_path: Path, app_url: str
) -> None:
    code, _, err = await cli(tmp_path, {"LONGTHREAD_DATABASE_URL": app_url}, "worker")
    assert code == 3, err[-3000:]
    line = _one_line(err)
    assert line.startswith("error: Temporal unreachable at 127.0.0.1:1 "
                           "(LONGTHREAD_TEMPORAL_ADDRESS): Failed client connect"), line
    assert "tester-password" not in err


async def test_db_setup_and_erase_name_the_admin_database_they_cannot_reach(
    tmp_path: Path
) -> None:
    for args in (["db", "setup", "--admin-url", DEAD_DB],
                 ["db", "erase", "foo", "--yes", "--admin-url", DEAD_DB],
                 ["db", "erase", "--all", "--yes", "--admin-url", DEAD_DB]):
        code, _, err = await cli(tmp_path, {}, *args)
        assert code == 3, (args, err[-3000:])
        assert _one_line(err).startswith(
            "error: archive database unreachable (nobody@127.0.0.1:1/x): "), args
    # From the environment too, the way docker-compose passes it.
    code, _, err = await cli(tmp_path, {"LONGTHREAD_ADMIN_DATABASE_URL": DEAD_DB}, "db", "setup")
    assert code == 3 and "unreachable (nobody@127.0.0.1:1/x)" in _one_line(err)


async def test_an_archive_a_newer_longthread_migrated_is_refused(
    tmp_path: Path, pg_url: str
) -> None:
    known = len(MIGRATIONS)
    async with database_at(pg_url, known) as url:
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            await conn.execute("INSERT INTO schema_version (version) VALUES (%s)", (known + 1,))
        code, _, err = await cli(tmp_path, {"LONGTHREAD_DATABASE_URL": url}, "worker")
        assert code == 1, err[-3000:]
        assert _one_line(err) == (f"error: the archive's schema is at version {known + 1}, "
                                  f"newer than this worker's {known}: upgrade the worker")
        code, _, err = await cli(tmp_path, {}, "db", "setup", "--admin-url", url)
        assert code == 1, err[-3000:]
        assert _one_line(err) == (f"error: the archive's schema is at version {known + 1}, "
                                  f"newer than this longthread's {known}: upgrade longthread")


async def test_import_names_a_files_bad_lines_with_no_stack_running(tmp_path: Path) -> None:
    """The file is checked before connecting: a bad one needs no stack to be diagnosed, and
    every bad line is named in one run (ut27)."""
    source = tmp_path / "old.jsonl"
    source.write_text('{"id": "a", "role": "user", "content": "hi"}\nnot json\n'
                      '{"id": "b", "role": "assistant", "content": ""}\n')
    code, out, err = await cli(tmp_path, {}, "import", "s1", str(source))
    assert code == 2, err[-3000:]
    assert err.strip().splitlines() == [
        "error: line 2: is not valid JSON (Expecting value)",
        "line 3: content: must not be empty (unless tool_calls is set)"]
    assert "Temporal" not in err and not out
