"""JSONL in and out: message files for `import`, whole-session exports with their ledger.

An export is JSONL too: a header line, one line per message (in order), then one line per
ledger record, so it streams, diffs and greps like any message file.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from memory.errors import InvalidInputError
from memory.models import CompactionRecord, Message, invalid_input, parse_messages

__all__ = ["EXPORT_FORMAT", "SessionFile", "check_writable", "ledger_parts", "read_session_file",
           "write_export"]

EXPORT_FORMAT = "longthread-export/1"


class SessionFile(BaseModel):
    model_config = ConfigDict(frozen=True)

    messages: tuple[Message, ...]
    ledger: tuple[CompactionRecord, ...] = ()
    source: dict[str, Any] | None = None


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    if not path.exists():
        raise InvalidInputError("FILE", f"{path} does not exist")
    if path.is_dir():
        raise InvalidInputError("FILE", f"{path} is a directory; name a JSONL file")
    with path.open(encoding="utf-8", errors="strict") as handle:
        try:
            for number, line in enumerate(handle, start=1):
                if line.strip():
                    yield number, line
        except UnicodeDecodeError as exc:
            raise InvalidInputError("FILE", f"{path} is not valid UTF-8 ({exc.reason})") from None


def read_session_file(path: Path) -> SessionFile:
    """Parse and validate every line first, so a bad line 9,000 changes nothing stored."""
    messages: list[Message] = []
    ledger: list[CompactionRecord] = []
    source: dict[str, Any] | None = None
    seen: dict[str, int] = {}  # id -> line
    for number, line in _lines(path):
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InvalidInputError(f"line {number}", f"is not valid JSON ({exc.msg})") from None
        if not isinstance(item, dict):
            raise InvalidInputError(f"line {number}", "must be a JSON object")
        if "format" in item and number == 1:
            if item["format"] != EXPORT_FORMAT:
                raise InvalidInputError("line 1", f"unknown export format {item['format']!r}")
            source = item
            continue
        if "ledger_record" in item:
            try:
                ledger.append(CompactionRecord.model_validate(item["ledger_record"]))
            except ValueError as exc:
                raise InvalidInputError(f"line {number}", f"bad ledger record: {exc}") from None
            continue
        try:
            (message,) = parse_messages([item])
        except InvalidInputError as exc:
            field = exc.field.removeprefix("messages[0].")
            raise InvalidInputError(f"line {number}", f"{field}: {exc.problem}") from None
        if message.id in seen:
            raise InvalidInputError(f"line {number}", f"message id {message.id!r} is already "
                                    f"on line {seen[message.id]}")
        seen[message.id] = number
        messages.append(message)
    return SessionFile(messages=tuple(messages), ledger=tuple(ledger), source=source)


def check_writable(path: Path, force: bool) -> None:
    """Refuse an export that could not be written, before anything is read or settled."""
    if path.is_dir():
        raise InvalidInputError("FILE", f"{path} is a directory; name the file to write")
    if not path.parent.is_dir():
        raise InvalidInputError("FILE", f"{path.parent} does not exist")
    if path.exists() and not force:
        raise InvalidInputError("FILE", f"{path} exists; pass --force to overwrite it")


def write_export(path: Path, tenant: str, session: str, messages: Iterable[Message],
                 ledger: Iterable[CompactionRecord]) -> int:
    """Write to a temporary file beside `path`, then rename: an export that fails halfway
    leaves no truncated file (and an overwritten one intact)."""
    partial = path.with_name(f".{path.name}.partial")
    try:
        count = _write(partial, tenant, session, messages, ledger)
        partial.replace(path)
    finally:
        partial.unlink(missing_ok=True)
    return count


def _write(path: Path, tenant: str, session: str, messages: Iterable[Message],
           ledger: Iterable[CompactionRecord]) -> int:
    count = 0
    with path.open("w", encoding="utf-8") as out:
        out.write(json.dumps({"format": EXPORT_FORMAT, "tenant": tenant,
                              "session": session}) + "\n")
        for message in messages:
            out.write(message.model_dump_json(exclude_defaults=True) + "\n")
            count += 1
        for record in ledger:
            out.write(json.dumps({"ledger_record": record.model_dump(mode="json")}) + "\n")
    return count


def ledger_parts(records: Sequence[CompactionRecord | Mapping[str, Any]], limit: int
                 ) -> list[tuple[int, tuple[CompactionRecord, ...]]]:
    """A ledger in consecutive parts of at most `limit` bytes of JSON each, with the index of
    each part's first record: a long session's ledger is larger than one Temporal payload
    (2 MB), so `restore_ledger` sends it in parts. Every record is validated first, so a bad
    record 9,000 sends nothing; the error names it (`records[9000].seq`)."""
    parsed: list[CompactionRecord] = []
    for n, record in enumerate(records):
        try:
            parsed.append(record if isinstance(record, CompactionRecord)
                          else CompactionRecord.model_validate(record))
        except ValidationError as exc:
            raise invalid_input(exc, prefix=f"records[{n}]") from None
    parts: list[tuple[int, tuple[CompactionRecord, ...]]] = []
    start, size = 0, 0
    for n, record in enumerate(parsed):
        bytes_ = len(record.model_dump_json().encode("utf-8")) + 1  # and its comma
        if bytes_ > limit:
            raise InvalidInputError(f"records[{n}]", f"is {bytes_} bytes; the limit for one "
                                    f"record is {limit} bytes (Temporal caps a payload at 2 MB)")
        if n > start and size + bytes_ > limit:
            parts.append((start, tuple(parsed[start:n])))
            start, size = n, 0
        size += bytes_
    parts.append((start, tuple(parsed[start:])))
    return parts
