"""`longthread db`: what an admin runs against the archive. Setup (migrations and the app's
least-privilege login) and erasure, which the app's login may not do."""

from __future__ import annotations

import json
import sys
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.progress import track

from longthread.cli_support import EXIT_INPUT, Json, Tenant, err, out, run
from longthread.settings import Settings, resolve_settings

if TYPE_CHECKING:
    from longthread.erasure import Erasure

__all__ = ["db_app"]

T = TypeVar("T")

db_app = typer.Typer(help="Database administration.", no_args_is_help=True)

AdminUrl = Annotated[str | None, typer.Option(
    envvar="LONGTHREAD_ADMIN_DATABASE_URL",
    help="A login that may delete from the archive (default: LONGTHREAD_DATABASE_URL, which "
         "for the embedded `longthread dev` stack may).")]


@db_app.command("setup")
def db_setup(
    admin_url: Annotated[str, typer.Option(
        envvar="LONGTHREAD_ADMIN_DATABASE_URL",
        help="A login that may create tables and roles (run once, by an admin).")],
    app_user: Annotated[str | None, typer.Option(
        help="Create (or update) this least-privilege login for workers and clients.")] = None,
    app_password: Annotated[str | None, typer.Option(
        envvar="LONGTHREAD_APP_PASSWORD", help="Its password.")] = None,
) -> None:
    """Migrate the archive and create the application's least-privilege login role: a
    member of longthread_app, no superuser, no BYPASSRLS, so row-level security holds. The
    archive is made for LONGTHREAD_EMBEDDING_DIM-sized vectors: run it with the workers'
    settings."""
    from memory.store.roles import setup_database

    version = run(_admin_connect(admin_url, setup_database(
        admin_url, Settings().dimensions, app_user, app_password)))
    out.print(f"schema at version {version}"
              + (f"; login role {app_user} can connect as longthread_app" if app_user else ""))


@db_app.command("erase")
def db_erase(
    sessions: Annotated[list[str] | None, typer.Argument(
        metavar="[SESSION]...", help="The sessions to erase.", show_default=False)] = None,
    tenant: Tenant = "default",
    every: Annotated[bool, typer.Option(
        "--all", help="Erase every session of the tenant.")] = False,
    admin_url: AdminUrl = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask to confirm.")] = False,
    as_json: Json = False,
) -> None:
    """Erase sessions for good, on a customer's request: every message, embedding, summary,
    ledger record, compaction event and served context, then every run of the session's
    workflow in Temporal (whose history holds the messages too). It cannot be undone; the
    session's id refuses every write after."""
    if bool(sessions) == every:
        err.print("[red]error:[/red] SESSION: name the sessions to erase, or pass --all "
                  "(not both)", highlight=False)
        raise typer.Exit(EXIT_INPUT)
    if not yes and not sys.stdin.isatty():
        err.print("[red]error:[/red] --yes: erasing cannot be undone; with no terminal to "
                  "ask on, pass --yes", highlight=False)
        raise typer.Exit(EXIT_INPUT)
    run(_erase(sessions or [], tenant, every, admin_url, yes, as_json))


async def _erase(sessions: list[str], tenant: str, every: bool, admin_url: str | None,
                 yes: bool, as_json: bool) -> None:
    from longthread.client import NO_ARCHIVE, Longthread, check_ids
    from memory.errors import NotFoundError
    from memory.store.erasure import tenant_sessions

    for session in sessions:
        check_ids(tenant, session)
    settings = resolve_settings()
    url = admin_url or settings.database_url
    if not url:
        raise ConnectionError(NO_ARCHIVE)
    known = await _admin_connect(url, tenant_sessions(url, tenant))
    missing = [name for name in sessions if name not in known]
    if missing:  # refused before anything is erased, not halfway through the list
        raise NotFoundError(f"no session {', '.join(map(repr, missing))} in tenant {tenant!r}"
                            "; nothing was erased")
    names = known if every else sessions
    if not names:  # a mistyped tenant must not read as a done erasure to a script
        raise NotFoundError(f"tenant {tenant!r} holds no session to erase")
    if not yes:  # on stderr: stdout may be the --json file
        typer.confirm(f"Erase {len(names)} session(s) of tenant {tenant!r} for good "
                      f"({', '.join(names[:5])}{', …' if len(names) > 5 else ''})?",
                      abort=True, err=True)
    lt = await Longthread.connect(settings)
    done: list[Erasure] = []
    try:
        for name in track(names, description="erasing", disable=len(names) < 2 or as_json,
                          console=err):
            done.append(await lt.erase(name, tenant, admin_url=url))
            if not as_json:
                out.print(_line(done[-1]), highlight=False)
    finally:  # what was erased is said even when a later session failed (Temporal down)
        if as_json:
            print(json.dumps([e.model_dump(mode="json") for e in done], indent=2))


async def _admin_connect(url: str, work: Coroutine[Any, Any, T]) -> T:
    """`work` on the admin's login, a database it cannot reach reported as one line naming
    it (never its password) for the CLI's exit 3, not psycopg's traceback."""
    import psycopg

    from longthread.settings import database_url_problem
    from memory.errors import InvalidInputError
    from memory.store.db import unreachable

    problem = database_url_problem(url)
    if problem:
        work.close()  # never started
        raise InvalidInputError("LONGTHREAD_ADMIN_DATABASE_URL (--admin-url)", problem)
    try:
        return await work
    except (OSError, psycopg.OperationalError) as exc:
        raise unreachable("archive database", url, exc) from None


def _line(erased: Erasure) -> str:
    rows, archive = erased.archive.rows, erased.archive
    what = ("already erased on " + archive.erased_at.isoformat(timespec="seconds")
            if archive.already else
            f"{rows.get('messages', 0)} messages, {rows.get('ledger', 0)} ledger records, "
            f"{rows.get('summaries', 0)} summaries, "
            f"{rows.get('served_contexts', 0)} served contexts")
    return (f"erased {archive.session!r} of tenant {archive.tenant!r}: {what}; "
            f"{erased.runs_deleted} workflow run(s) deleted")
