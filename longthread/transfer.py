"""JSONL in and out: message files for `import`, whole-session exports with their ledger.

An export is JSONL too: a header line, one line per message (in order), then one line per
ledger record, then one per context served, so it streams, diffs and greps like any message
file. The served contexts travel with the session so that `replay` on an imported copy shows
what the model saw in the original.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from memory.audit import ServedContext
from memory.errors import InvalidInputError
from memory.models import CompactionRecord, Message, invalid_input, parse_messages

__all__ = ["EXPORT_FORMAT", "SessionFile", "check_writable", "ledger_parts", "read_session_file",
           "write_export"]

# /2 adds served-context lines; /1 files (messages and ledger only) still import.
EXPORT_FORMAT = "longthread-export/2"
READABLE_FORMATS = ("longthread-export/1", EXPORT_FORMAT)

_M = TypeVar("_M", bound=BaseModel)


class SessionFile(BaseModel):
    model_config = ConfigDict(frozen=True)

    messages: tuple[Message, ...]
    ledger: tuple[CompactionRecord, ...] = ()
    served: tuple[ServedContext, ...] = ()
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


def _parse(model: type[_M], raw: object, number: int, what: str) -> _M:
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        error = invalid_input(exc)
        raise InvalidInputError(f"line {number}",
                                f"bad {what}: {error.field}: {error.problem}") from None


def read_session_file(path: Path) -> SessionFile:
    """Parse and validate every line first, so a bad line 9,000 changes nothing stored."""
    messages: list[Message] = []
    ledger: list[CompactionRecord] = []
    served: list[ServedContext] = []
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
            if item["format"] not in READABLE_FORMATS:
                raise InvalidInputError("line 1", f"unknown export format {item['format']!r}")
            source = item
            continue
        if "ledger_record" in item:
            ledger.append(_parse(CompactionRecord, item["ledger_record"], number,
                                 "ledger record"))
            continue
        if "served_context" in item:
            served.append(_parse(ServedContext, item["served_context"], number,
                                 "served context"))
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
    return SessionFile(messages=tuple(messages), ledger=tuple(ledger), served=tuple(served),
                       source=source)


def check_writable(path: Path, force: bool) -> None:
    """Refuse an export that could not be written, before anything is read or settled."""
    if path.is_dir():
        raise InvalidInputError("FILE", f"{path} is a directory; name the file to write")
    if not path.parent.is_dir():
        raise InvalidInputError("FILE", f"{path.parent} does not exist")
    if path.exists() and not force:
        raise InvalidInputError("FILE", f"{path} exists; pass --force to overwrite it")


def write_export(path: Path, tenant: str, session: str, messages: Iterable[Message],
                 ledger: Iterable[CompactionRecord], served: Iterable[Mapping[str, Any]] = ()
                 ) -> int:
    """Write to a temporary file beside `path`, then rename: an export that fails halfway
    leaves no truncated file (and an overwritten one intact)."""
    partial = path.with_name(f".{path.name}.partial")
    try:
        count = _write(partial, tenant, session, messages, ledger, served)
        partial.replace(path)
    finally:
        partial.unlink(missing_ok=True)
    return count


def _write(path: Path, tenant: str, session: str, messages: Iterable[Message],
           ledger: Iterable[CompactionRecord], served: Iterable[Mapping[str, Any]]) -> int:
    count = 0
    with path.open("w", encoding="utf-8") as out:
        out.write(json.dumps({"format": EXPORT_FORMAT, "tenant": tenant,
                              "session": session}) + "\n")
        for message in messages:
            out.write(message.model_dump_json(exclude_defaults=True) + "\n")
            count += 1
        for record in ledger:
            out.write(json.dumps({"ledger_record": record.model_dump(mode="json")}) + "\n")
        for context in served:
            out.write(json.dumps({"served_context": context}) + "\n")
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
