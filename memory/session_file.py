"""A `memory.Session` on disk: written whole or not at all, and read back only when it is one.

The one module under memory/ besides `session.py` that touches files; workflows never import
it. From session 28's user test of library mode: `save` rewrote the file in place, so a
process killed while saving left an empty or cut-off file and the session was gone; `load`
took any JSON object (a `package.json` came back as an empty session, which the next `save`
would have written over), a file with one id twice, and a window naming messages the file
did not hold.
"""

from __future__ import annotations

import os
import re
import stat
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from memory.compaction import WindowState
from memory.errors import InvalidInputError
from memory.models import CompactionRecord, Message, message_digest
from memory.policy import CompactionPolicy
from memory.window import by_reference

__all__ = ["SESSION_FORMAT", "SessionData", "read_session", "write_session"]

SESSION_FORMAT = 1


class SessionData(BaseModel):
    """Everything a session holds; what `save` writes and `load` reads back."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    format: Literal[1]
    session_id: str
    policy: CompactionPolicy
    messages: tuple[Message, ...]
    window: WindowState
    ledger: tuple[CompactionRecord, ...]


def write_session(path: str | Path, data: SessionData) -> None:
    """Write beside the file, flush it to disk, then rename it over the old one: a crash at
    any point leaves the old save or the new one, never a part of either. A symlink is
    written through (the file it names is replaced), and the file keeps its permissions (a
    new one gets the umask's). A process killed mid-save leaves its temporary file
    (`.NAME.xxxxxxxx.tmp`); the next `load` of the file removes it."""
    target = Path(os.path.realpath(path))
    try:
        mode = stat.S_IMODE(target.stat().st_mode)
    except FileNotFoundError:
        mode = 0o666 & ~_umask()
    text = data.model_dump_json(indent=1).encode("utf-8")
    handle, temporary = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp",
                                         dir=target.parent)
    try:
        os.fchmod(handle, mode)
        with os.fdopen(handle, "wb") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    directory = os.open(target.parent, os.O_RDONLY)
    try:  # the rename itself reaches the disk
        os.fsync(directory)
    finally:
        os.close(directory)


def _umask() -> int:
    """The process's umask, read without setting it (os.umask sets it, for every thread)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    return 0o022


STALE_SECONDS = 60.0  # a temporary file this old is no save in progress: its writer was killed


def _sweep(target: Path) -> None:
    """Remove what saves killed before their rename left beside the file: only names
    `tempfile.mkstemp` made for it (a user's `.chat.json.backup.tmp` is not one), and only
    those a minute old (a save still going has written its own within the minute)."""
    made = re.compile(rf"\.{re.escape(target.name)}\.[a-z0-9_]{{8}}\.tmp")
    cutoff = time.time() - STALE_SECONDS
    try:
        entries = list(os.scandir(target.parent))
    except OSError:
        return
    for entry in entries:
        if not made.fullmatch(entry.name):
            continue
        try:
            if entry.is_file(follow_symlinks=False) and entry.stat().st_mtime < cutoff:
                os.unlink(entry.path)
        except OSError:
            pass  # another process swept it, or it is not ours to remove


def read_session(path: str | Path) -> SessionData:
    """The saved session, or InvalidInputError naming the file and what is wrong with it.
    Sweeps what killed saves of it left (`write_session`)."""
    _sweep(Path(os.path.realpath(path)))
    def refused(problem: str) -> InvalidInputError:
        return InvalidInputError(str(path), f"not a saved session ({problem})")

    try:  # bytes: a file that is no UTF-8 is refused as no JSON, not as a decoding crash
        data = SessionData.model_validate_json(Path(path).read_bytes())
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "file"
        raise refused(f"{where}: {first['msg']}") from None
    archived: dict[str, Message] = {}
    for index, message in enumerate(data.messages):
        if message.id in archived:
            raise refused(f"messages[{index}].id: {message.id!r} is there twice")
        archived[message.id] = message
    _check_unique("window.messages", [m.id for m in data.window.messages], refused)
    _check_unique("window.summaries", [x.id for x in data.window.summaries], refused)
    _check_unique("ledger", [r.id for r in data.ledger], refused)
    for index, summary in enumerate(data.window.summaries):
        unknown = next((i for i in (*summary.covers, *(summary.span or ()))
                        if i not in archived), None)
        if unknown is not None:
            raise refused(f"window.summaries[{index}]: covers {unknown!r}, which is not among "
                          "the messages")
    for index, shown in enumerate(data.window.messages):
        original = archived.get(shown.id)
        if original is None:
            raise refused(f"window.messages[{index}]: {shown.id!r} is not among the messages")
        if message_digest(shown) not in (message_digest(original),
                                         message_digest(by_reference(original))):
            raise refused(f"window.messages[{index}]: {shown.id!r} differs from the message "
                          "stored under that id")
    return data


def _check_unique(where: str, ids: list[str], refused: Callable[[str], InvalidInputError]
                  ) -> None:
    seen: set[str] = set()
    for index, ident in enumerate(ids):
        if ident in seen:
            raise refused(f"{where}[{index}]: {ident!r} is there twice")
        seen.add(ident)
