"""The CLI prints a database error no retry mends as one line (an SRE's user test: `longthread
context` under a missing grant printed a 73-line traceback ending in InsufficientPrivilege)."""

from __future__ import annotations

import psycopg
import pytest
import typer

from longthread.cli_support import EXIT_FAIL, run


async def _denied() -> None:
    raise psycopg.errors.InsufficientPrivilege("permission denied for table sessions")


async def _lost() -> None:
    raise psycopg.OperationalError("server closed the connection unexpectedly")


def test_a_missing_grant_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(typer.Exit) as info:
        run(_denied())
    assert info.value.exit_code == EXIT_FAIL
    said = capsys.readouterr().err
    assert "the archive refused this login" in said and "SQLSTATE 42501" in said
    assert "Traceback" not in said


def test_other_database_errors_are_not_dressed_up() -> None:
    with pytest.raises(psycopg.OperationalError):
        run(_lost())
