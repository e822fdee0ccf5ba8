"""A `memory.Session` on disk: written whole or not at all, and read back only when it is one.

The one module under memory/ besides `session.py` that touches files; workflows never import
it. From session 28's user test of library mode: `save` rewrote the file in place, so a
process killed while saving left an empty or cut-off file and the session was gone; `load`
took any JSON object (a `package.json` came back as an empty session, which the next `save`
would have written over), a file with one id twice, and a window naming messages the file
did not hold.
"""

from __future__ import annotations

import glob
import os
import tempfile
import time
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
    any point leaves the old save or the new one, never a part of either. A process killed
    mid-save leaves its temporary file (`.NAME.*.tmp`); the next save removes it."""
    target = Path(path)
    text = data.model_dump_json(indent=1).encode("utf-8")
    handle, temporary = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp",
                                         dir=target.parent)
    try:
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
    _sweep(target)


STALE_SECONDS = 60.0  # a temporary file this old is no save in progress: its writer was killed


def _sweep(target: Path) -> None:
    """Remove what saves killed before their rename left beside the file (a writer still
    going has touched its own within the minute)."""
    cutoff = time.time() - STALE_SECONDS
    for leftover in target.parent.glob(f".{glob.escape(target.name)}.*.tmp"):
        try:
            if leftover.stat().st_mtime < cutoff:
                leftover.unlink()
        except FileNotFoundError:
            pass  # another save swept it first


def read_session(path: str | Path) -> SessionData:
    """The saved session, or InvalidInputError naming the file and what is wrong with it."""
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
    for index, shown in enumerate(data.window.messages):
        original = archived.get(shown.id)
        if original is None:
            raise refused(f"window.messages[{index}]: {shown.id!r} is not among the messages")
        if message_digest(shown) not in (message_digest(original),
                                         message_digest(by_reference(original))):
            raise refused(f"window.messages[{index}]: {shown.id!r} differs from the message "
                          "stored under that id")
    return data
