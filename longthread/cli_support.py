"""What every `longthread` command shares: the consoles, the exit codes, the argument types,
and how a command body runs (known failures become one line and an exit code).

Apart from `longthread/cli.py` so that module holds the commands alone.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Annotated, Any, TypeVar

import psycopg
import typer
from dotenv import dotenv_values
from rich.console import Console
from temporalio.service import RPCError

from memory.errors import InvalidInputError, LongthreadError, NotFoundError
from memory.store.db import archive_refusal

__all__ = ["EXIT_FAIL", "EXIT_INPUT", "EXIT_NO_STACK", "PIPED_WIDTH", "Json", "SessionId",
           "Tenant", "dotenv_into_environ", "err", "out", "print_version", "run"]

PIPED_WIDTH = 200


def _width() -> int | None:
    """Output to a pipe or a file has no terminal to size it by, and rich then folds every
    table at 80 columns: a ledger's ten columns and its reasons became a column of word
    fragments in `longthread ledger S | less`. `COLUMNS` still wins when it is set."""
    return None if sys.stdout.isatty() or os.environ.get("COLUMNS") else PIPED_WIDTH


out = Console(width=_width())
err = Console(stderr=True)
T = TypeVar("T")

EXIT_FAIL, EXIT_INPUT, EXIT_NO_STACK = 1, 2, 3
Tenant = Annotated[str, typer.Option("--tenant", "-t", help="Tenant the session belongs to.")]
Json = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]
SessionId = Annotated[str, typer.Argument(
    metavar="SESSION", help="The session's id (1-200 visible characters: a ticket, a UUID).")]


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run a command body, mapping known failures to one clear line and an exit code."""
    try:
        return asyncio.run(coro)
    except (InvalidInputError, NotFoundError) as exc:
        err.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(EXIT_INPUT) from None
    except ConnectionError as exc:
        err.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(EXIT_NO_STACK) from None
    except (LongthreadError, RPCError) as exc:
        err.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(EXIT_FAIL) from None
    except psycopg.Error as exc:
        said = archive_refusal(exc)
        if said is None:
            raise
        err.print(f"[red]error:[/red] {said}", highlight=False, soft_wrap=True)
        raise typer.Exit(EXIT_FAIL) from None
    except KeyboardInterrupt:
        raise typer.Exit(130) from None


def dotenv_into_environ(path: Path = Path(".env")) -> None:
    """The settings only their own command reads (`--token`'s LONGTHREAD_UI_TOKEN, `db setup`'s
    logins, the embedded Postgres's buffers, the model cache) come from the environment; take
    them from ./.env too, as `Settings` does for the rest. The environment wins, and only
    LONGTHREAD_* keys are taken, so a .env's other keys (an SDK's own API key) stay out."""
    for key, value in dotenv_values(path).items():
        if key.startswith("LONGTHREAD_") and value and key not in os.environ:
            os.environ[key] = value


def print_version(asked: bool) -> None:
    """`longthread --version`: the installed package's version, and the versions that tell two
    builds of it apart (the package's stayed 0.1.0 across releases: an operator in a rolling
    upgrade could not tell an old host from a new one): the archive schema it needs, its
    engine and its assembly. Answered before the settings are read, so it works whatever the
    environment holds (a deploy script checks it first)."""
    if asked:
        from importlib.metadata import version

        from memory.build import build_label

        out.print(f"longthread {version('longthread')} ({build_label()})", highlight=False)
        raise typer.Exit()
