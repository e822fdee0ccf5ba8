"""The `longthread` command line. Every command has --help, a clear exit code, and a one-line
error for bad input: 0 ok, 1 failure (or a replay that differs), 2 bad input or a missing
session, 3 no running stack."""

from __future__ import annotations

import logging
import os
import signal
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from longthread.cli_chat import chat
from longthread.cli_db import db_app
from longthread.cli_errors import settings_errors
from longthread.cli_health import health
from longthread.cli_resume import resume
from longthread.cli_search import search
from longthread.cli_support import (
    EXIT_FAIL,
    EXIT_INPUT,
    Json,
    SessionId,
    Tenant,
    dotenv_into_environ,
    err,
    out,
    print_version,
    run,
)
from longthread.cli_tenant import export_all, import_all
from longthread.commands import connected, plan_import
from longthread.settings import Settings
from memory.checks import MAX_CONTEXT_TOKENS, MAX_TURN

app = typer.Typer(help="Durable, auditable context compaction for long AI conversations.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
@app.callback()
def _main(verbose: Annotated[bool, typer.Option(
        "--verbose", "-v", help="Log what the client and worker do (INFO).")] = False,
          _: Annotated[bool, typer.Option(
              "--version", callback=print_version, is_eager=True,
              help="Print longthread's version and exit.")] = False) -> None:
    dotenv_into_environ()  # before the subcommand's options read their environment variables
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # Every command reads the settings: refuse bad ones here, once, before any connects. A
    # subcommand's --help is parsed after this callback, and should still answer.
    problems = [] if "--help" in sys.argv[1:] else settings_errors()
    for problem in problems:
        err.print("[red]error:[/red]", escape(problem), highlight=False, soft_wrap=True)
    if problems:
        raise typer.Exit(EXIT_INPUT)


@app.command()
def dev(data_dir: Annotated[Path | None, typer.Option(
        help="Where Temporal and Postgres keep their data.")] = None) -> None:
    """Run the embedded stack (Temporal dev server, Postgres+pgvector, worker) until Ctrl-C."""
    from worker.dev import run_dev

    settings = Settings()
    if data_dir is not None:
        settings = settings.model_copy(update={"data_dir": data_dir})
    run(run_dev(settings, lambda line: out.print(line, highlight=False, markup=False,
                                                  soft_wrap=True)))


@app.command()
def worker() -> None:
    """Run only the worker, against the Temporal and Postgres named by LONGTHREAD_* settings,
    or else those of the `longthread dev` running on the data dir (one more worker for it).
    SIGTERM or Ctrl-C stops it gracefully: running activities get
    LONGTHREAD_SHUTDOWN_GRACE_SECONDS to finish; a second signal stops it at once."""
    from longthread.settings import resolve_settings
    from worker.main import serve_worker

    run(serve_worker(resolve_settings(Settings()),
                     lambda line: out.print(line, highlight=False, markup=False)))


@app.command()
def demo(data_dir: Annotated[Path | None, typer.Option(
        help="Keep the demo's stack data here.")] = None,
         locomo: Annotated[bool, typer.Option(
             "--locomo", help="Play LoCoMo's first conversation from ../shared instead "
                              "(for benchmarks; never shipped).")] = False) -> None:
    """The main job on an embedded stack of its own, with no keys: a six-day incident."""
    from longthread.demo import run_demo

    run(run_demo(out, data_dir, locomo=locomo))


@app.command("import")
def import_(session: SessionId,
            file: Annotated[Path, typer.Argument(
                help="JSONL: one message per line, or a file `export` wrote.")],
            tenant: Tenant = "default",
            batch: Annotated[int, typer.Option(
                min=1, max=500, help="At most this many messages per append call (a call "
                "also stays under 1.5 MB, so large messages go in smaller calls).")] = 100
            ) -> None:
    """Append a JSONL file of messages (or a session export, ledger included). Re-running it
    appends nothing twice."""
    async def body() -> None:
        plan = plan_import(file, batch)  # a bad file is named before, and without, a stack
        async with connected(out) as ctx:
            await ctx.import_file(session, plan, tenant)
    run(body())


@app.command()
def context(session: SessionId, query: Annotated[str | None, typer.Option(
                "--query", "-q", help="What the model call is about; retrieval looks for it "
                                      "in the whole session.")] = None,
            max_tokens: Annotated[int, typer.Option(
                "--max-tokens", "-n", min=1, max=MAX_CONTEXT_TOKENS,
                help="The window's token budget.")] = 4000,
            tenant: Tenant = "default", as_json: Json = False) -> None:
    """Build the context window a model call would get now."""
    async def body() -> None:
        async with connected(out) as ctx:
            await ctx.context(session, tenant, query, max_tokens, as_json)
    run(body())


@app.command()
def show(session: SessionId, ids: Annotated[list[str], typer.Argument(
             help="Message ids, e.g. the one a window's preview names ('in full in the "
             "archive as ID') or those a summary line covers.")],
         tenant: Tenant = "default", as_json: Json = False) -> None:
    """Print stored messages in full, by id: the whole of a large tool result the window
    shows as a preview, or a message a summary covers. Ids not found are named (exit 2)."""
    async def body() -> None:
        async with connected(out, need_db=True) as ctx:
            await ctx.show(session, tenant, ids, as_json)
    run(body())


@app.command()
def compact(session: SessionId,
            preserve_recent: Annotated[int | None, typer.Option(
                min=0, max=10_000, help="Keep this many newest messages verbatim, 0 to 10,000 "
                "(default: the policy's, LONGTHREAD_PRESERVE_RECENT).")] = None,
            focus: Annotated[str | None, typer.Option(help="What the summary must keep.")] = None,
            tenant: Tenant = "default") -> None:
    """Compact the session now and print the ledger record."""
    async def body() -> None:
        async with connected(out) as ctx:
            await ctx.compact(session, tenant, preserve_recent, focus)
    run(body())


@app.command()
def ledger(session: SessionId, tenant: Tenant = "default", as_json: Json = False) -> None:
    """Every compaction of the session, as a timeline."""
    async def body() -> None:
        async with connected(out, need_db=True) as ctx:
            await ctx.ledger(session, tenant, as_json)
    run(body())


@app.command()
def why(session: SessionId, target: Annotated[str, typer.Argument(
            metavar="TURN|ID", help="A turn number (turn N is the N-th message stored, counted "
            "from 1), or a message id, whole or as the tail a window shows ('…9f02873d').")],
        tenant: Tenant = "default", as_json: Json = False,
        by_id: Annotated[bool, typer.Option(
            "--id", help="Read TURN|ID as a message id even when it is a number.")] = False
        ) -> None:
    """Why a message left the window: the message and its turn, each ledger record that
    covered it (when, which level, into which summary, the record's reason) or undid one,
    each later merge of that summary, and which summary in the window stands for it now."""
    async def body() -> None:
        async with connected(out, need_db=True) as ctx:
            await ctx.why(session, tenant, target, as_json, by_id)
    run(body())


@app.command()
def replay(session: SessionId, at: Annotated[int | None, typer.Option(
               "--at", min=0, max=MAX_TURN,
               help="Turn number: the newest context served at or before it is rebuilt.")] = None,
           seq: Annotated[int | None, typer.Option(
               "--seq", min=1, max=MAX_TURN,
               help="The number of one served context (replay and the audit page list them "
                    "when a turn was served more than once); instead of --at.")] = None,
           tenant: Tenant = "default", as_json: Json = False) -> None:
    """Rebuild the window the model saw after turn N and check it against what was served."""
    if (at is None) == (seq is None):
        raise typer.BadParameter("give one of --at TURN or --seq N", param_hint="--at/--seq")

    async def body() -> bool:
        async with connected(out, need_db=True) as ctx:
            return await ctx.replay(session, tenant, MAX_TURN if at is None else at, as_json,
                                    seq=seq)
    if not run(body()):
        raise typer.Exit(EXIT_FAIL)


@app.command()
def verify(session: SessionId, tenant: Tenant = "default", as_json: Json = False,
           served: Annotated[bool, typer.Option(
               "--served/--no-served",
               help="Also rebuild every served context and check its digest (the long part)."
           )] = True) -> None:
    """Check that every message, ledger record and served context still matches the digest
    or hash stored with it; name any that do not (exit 1). Reads the database only."""
    async def body() -> bool:
        async with connected(out, need_db=True) as ctx:
            return await ctx.verify(session, tenant, as_json, served)
    if not run(body()):
        raise typer.Exit(EXIT_FAIL)


@app.command()
def sessions(tenant: Tenant = "default", as_json: Json = False) -> None:
    """List a tenant's sessions in the archive: messages, first and last message times,
    when the newest was stored."""
    async def body() -> None:
        async with connected(out, need_db=True) as ctx:
            await ctx.sessions(tenant, as_json)
    run(body())


@app.command()
def export(session: SessionId,
           file: Annotated[Path, typer.Argument(help="The JSONL file to write.")],
           tenant: Tenant = "default",
           force: Annotated[bool, typer.Option(
               "--force", help="Overwrite FILE if it exists.")] = False) -> None:
    """Write the whole session (every message, then the ledger) to a JSONL file."""
    async def body() -> None:
        async with connected(out, need_db=True) as ctx:
            await ctx.export(session, tenant, file, force)
    run(body())


@app.command()
def uncompact(session: SessionId, record: Annotated[str, typer.Argument(
                  help="The ledger record to undo (its id, as `ledger` shows it).")],
              tenant: Tenant = "default",
              with_later: Annotated[bool, typer.Option(
                  "--with-later", help="Also undo the later records that took its summary "
                  "out of the window (a compaction that merged it, or a clear), newest first, "
                  "all in one step; without it such an undo is refused, naming them.")
              ] = False) -> None:
    """Undo a compaction: its messages return to the window verbatim, and the undo is a
    ledger record of its own (so replay still rebuilds what was served before it)."""
    async def body() -> None:
        async with connected(out) as ctx:
            await ctx.uncompact(session, tenant, record, with_later)
    run(body())


app.command()(chat)
app.add_typer(db_app, name="db")
app.command()(search)
app.command()(health)
app.command()(resume)
app.command("export-all")(export_all)
app.command("import-all")(import_all)


@app.command()
def mcp(port: Annotated[int | None, typer.Option(
            min=1, max=65535,
            help="Serve streamable HTTP on 127.0.0.1:PORT instead of stdio.")] = None,
        tenant: Tenant = "default") -> None:
    """Serve longthread's tools (append, context, message, compact, uncompact, ledger,
    replay, why, search) to MCP clients: over stdio, or streamable HTTP with --port."""
    from longthread.mcp import serve

    run(serve(port=port, tenant=tenant))


@app.command()
def ui(port: Annotated[int, typer.Option(min=1, max=65535,
                                        help="Port of the audit page.")] = 8321,
       host: Annotated[str, typer.Option(
           help="Interface to listen on; anything but loopback needs --token.")] = "127.0.0.1",
       token: Annotated[str | None, typer.Option(
           envvar="LONGTHREAD_UI_TOKEN", help="Required to open the page.")] = None,
       tenant: Annotated[str | None, typer.Option(
           "--tenant", "-t", help="Show only this tenant (required beyond loopback).")] = None,
       ) -> None:
    """The audit web page: sessions, ledger timeline, covered messages beside their summary,
    the window served at any turn (digest checked), and undo."""
    from longthread.ui import serve

    def interrupted(signum: int, frame: object) -> None:
        # The page holds no state of its own (reads and undo go to the store and the workflow),
        # so Ctrl-C ends the process at once rather than wait on open keep-alive connections,
        # which held a graceful shutdown for minutes in a loaded test run.
        sys.stdout.flush()
        os._exit(130)

    signal.signal(signal.SIGINT, interrupted)
    run(serve(port=port, host=host, token=token, tenant=tenant))


def main() -> None:
    """The console script. After the command has finished, leave without interpreter
    finalization: the Temporal client's Rust runtime keeps threads that can race CPython's
    teardown and abort a short-lived process (exit 134, temporalio/sdk-python#300). Every
    command has already closed what it opened and flushed its output by then."""
    code: int = 0
    try:
        app()
    except SystemExit as exc:  # typer always ends this way, with the command's exit code
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
