"""`longthread export-all` and `import-all`: every session of a tenant, one export file each.

A tenant is often one customer: answering "give us all our data" (or moving a customer to
another deployment) took one `export` per session, after listing them. Each file is what
`export` writes (its first line names the tenant and session), so `import-all` needs no names.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path
from typing import Annotated
from urllib.parse import quote

import typer

from longthread.cli_support import Tenant, out, run
from longthread.commands import Ctx, connected, plan_import
from longthread.transfer import read_session_file
from memory.errors import InvalidInputError, NotFoundError

__all__ = ["export_all", "file_name", "file_names", "import_all"]

SUFFIX = ".jsonl"
MAX_STEM_BYTES = 200  # file systems take 255 bytes a name; a session id is up to 200 chars


def file_name(session: str, hashed: bool = False) -> str:
    """The session's id, percent-encoded ('/' and every byte a file name could trip on), and
    cut with a hash of the whole id when that is too long (or `hashed`): the file's first line
    holds the id itself, which is what `import-all` reads."""
    stem = quote(session, safe="-_.@+=,~")
    if stem.startswith("."):  # not a hidden file
        stem = "%2E" + stem[1:]
    if hashed or len(stem.encode()) > MAX_STEM_BYTES:
        digest = hashlib.sha256(session.encode()).hexdigest()[:16]
        stem = f"{stem[:MAX_STEM_BYTES - 17]}-{digest}"
    return stem + SUFFIX


def file_names(sessions: list[str]) -> dict[str, str]:
    """Each session's file name; two that differ only in case (one file on macOS's and
    Windows' file systems) both get the hashed form."""
    plain = {s: file_name(s) for s in sessions}
    folded = Counter(name.casefold() for name in plain.values())
    return {s: file_name(s, hashed=True) if folded[name.casefold()] > 1 else name
            for s, name in plain.items()}


async def _export_all(ctx: Ctx, tenant: str, directory: Path, force: bool) -> None:
    sessions = [s.session for s in await ctx.need_store().sessions(tenant)]
    if not sessions:
        raise NotFoundError(f"tenant: no session in tenant {tenant!r}")
    if directory.exists() and not directory.is_dir():
        raise InvalidInputError("DIR", f"{directory} is a file, not a directory")
    directory.mkdir(parents=True, exist_ok=True)
    names = file_names(sessions)
    taken = [name for name in names.values() if (directory / name).exists()]
    if taken and not force:  # refused before anything is written
        raise InvalidInputError("DIR", f"{len(taken)} of the files exist already (such as "
                                f"{taken[0]}); pass --force to overwrite them")
    for session in sessions:
        await ctx.export(session, tenant, directory / names[session], force=True)
    out.print(f"exported {len(sessions)} session{'s' * (len(sessions) != 1)} of tenant "
              f"{tenant!r} to {directory}", highlight=False)


async def _import_all(ctx: Ctx, tenant: str, directory: Path, batch: int) -> None:
    if not directory.is_dir():
        raise InvalidInputError("DIR", f"{directory} is not a directory")
    files = sorted(directory.glob(f"*{SUFFIX}"))
    if not files:
        raise InvalidInputError("DIR", f"holds no {SUFFIX} file")
    named: list[tuple[str, Path]] = []
    for path in files:  # every file checked before anything is imported
        source = read_session_file(path).source
        if source is None or not isinstance(source.get("session"), str):
            raise InvalidInputError(path.name, "is not a file `export` wrote (its first line "
                                    "names no session); import it with `longthread import`")
        named.append((source["session"], path))
    for session, path in named:
        out.print(f"{path.name} → session {session!r}", highlight=False)
        await ctx.import_file(session, plan_import(path, batch), tenant)
    out.print(f"imported {len(named)} session{'s' * (len(named) != 1)} into tenant {tenant!r}",
              highlight=False)


def export_all(directory: Annotated[Path, typer.Argument(
                   metavar="DIR", help="The directory to write (created if missing).")],
               tenant: Tenant = "default",
               force: Annotated[bool, typer.Option(
                   "--force", help="Overwrite files already in DIR.")] = False) -> None:
    """Export every session of the tenant, one file each (what `export` writes: messages,
    ledger and served contexts), named by the session's id."""
    async def body() -> None:
        async with connected(out, need_db=True) as ctx:
            await _export_all(ctx, tenant, directory, force)
    run(body())


def import_all(directory: Annotated[Path, typer.Argument(
                   metavar="DIR", help="A directory `export-all` wrote.")],
               tenant: Tenant = "default",
               batch: Annotated[int, typer.Option(
                   min=1, max=500, help="At most this many messages per append call.")] = 100
               ) -> None:
    """Import every file of DIR that `export` or `export-all` wrote, each into the session its
    first line names, in TENANT. Re-running it appends nothing twice."""
    async def body() -> None:
        async with connected(out) as ctx:
            await _import_all(ctx, tenant, directory, batch)
    run(body())
