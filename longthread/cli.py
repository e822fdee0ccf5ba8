"""The `longthread` command line. Every command has --help, a clear exit code, and a one-line
error for bad input: 0 ok, 1 unexpected failure, 2 bad input, 3 no running stack."""

from __future__ import annotations

import asyncio
import functools
import logging
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console

from memory.errors import InvalidInputError, LongthreadError, NotFoundError
from worker.settings import Settings

app = typer.Typer(help="Durable, auditable context compaction for long AI conversations.",
                  no_args_is_help=True, add_completion=False)
out = Console()
err = Console(stderr=True)
T = TypeVar("T")

EXIT_INPUT, EXIT_NO_STACK = 2, 3


def _run(coro: Coroutine[Any, Any, T]) -> T:
    """Run a command body, mapping known failures to one clear line and an exit code."""
    try:
        return asyncio.run(coro)
    except (InvalidInputError, NotFoundError) as exc:
        err.print(f"[red]error:[/red] {exc}", highlight=False)
        raise typer.Exit(EXIT_INPUT) from None
    except ConnectionError as exc:
        err.print(f"[red]error:[/red] {exc}", highlight=False)
        raise typer.Exit(EXIT_NO_STACK) from None
    except LongthreadError as exc:
        err.print(f"[red]error:[/red] {exc}", highlight=False)
        raise typer.Exit(1) from None


def _settings(**overrides: Any) -> Settings:
    return Settings(**{k: v for k, v in overrides.items() if v is not None})


def command(fn: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        _run(fn(*args, **kwargs))

    return wrapper


@app.callback()
def _main(verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


@app.command()
@command
async def dev(
    data_dir: Annotated[Path | None, typer.Option(help="Where Temporal and Postgres keep data.")]
    = None,
) -> None:
    """Run the embedded stack (Temporal dev server, Postgres+pgvector, worker) until Ctrl-C."""
    from worker.dev import run_dev

    await run_dev(_settings(data_dir=data_dir), lambda line: out.print(line, highlight=False))


@app.command()
@command
async def worker() -> None:
    """Run only the worker, against the Temporal and Postgres named by LONGTHREAD_* settings."""
    from worker.main import run_worker

    settings = Settings()
    if not settings.database_url:
        raise InvalidInputError("LONGTHREAD_DATABASE_URL", "is required to run a worker alone")
    await run_worker(settings)


@app.command()
@command
async def demo(
    data_dir: Annotated[Path | None, typer.Option(help="Keep the demo's stack data here.")]
    = None,
) -> None:
    """The main job on the embedded stack, with no keys: replay a long conversation."""
    from longthread.demo import run_demo

    await run_demo(out, data_dir)


def main() -> None:  # pragma: no cover - console script shim
    sys.exit(app())
