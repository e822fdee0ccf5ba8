"""JSONL in and out: message files for `import`, whole-session exports with their ledger.

An export is JSONL too: a header line, one line per message (in order), then one line per
ledger record, then one per context served, so it streams, diffs and greps like any message
file. The served contexts travel with the session so that `replay` on an imported copy shows
what the model saw in the original.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from longthread.sizes import (  # the size names, re-exported for callers of before session 32
    MAX_BATCH_BYTES,
    content_over_limit,
    largest_field,
    message_bytes,
    split_by_size,
    too_large,
    weighed,
)
from memory.audit import ServedContext
from memory.errors import InvalidInputError
from memory.models import CompactionRecord, Message, invalid_input, parse_messages

__all__ = [
    "EXPORT_FORMAT",
    "MAX_BATCH_BYTES",
    "SessionFile",
    "at_line",
    "check_writable",
    "content_over_limit",
    "largest_field",
    "ledger_left",
    "ledger_parts",
    "message_bytes",
    "message_parts",
    "read_session_file",
    "split_by_size",
    "weighed",
    "write_export",
]

# /2 adds served-context lines; /3, ledger records' `actor` and `preserve_recent`, which a
# version before them refuses field by field: it now says "unknown export format" instead.
# /1 files (messages and ledger only) and /2 files still import.
EXPORT_FORMAT = "longthread-export/3"
READABLE_FORMATS = ("longthread-export/1", "longthread-export/2", EXPORT_FORMAT)

_M = TypeVar("_M", bound=BaseModel)

class SessionFile(BaseModel):
    model_config = ConfigDict(frozen=True)

    messages: tuple[Message, ...]
    lines: tuple[int, ...] = ()  # the file line of each message, for errors found later
    ledger: tuple[CompactionRecord, ...] = ()
    served: tuple[ServedContext, ...] = ()
    source: dict[str, Any] | None = None


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    if not path.exists():
        raise InvalidInputError("FILE", f"{path} does not exist")
    if path.is_dir():
        raise InvalidInputError("FILE", f"{path} is a directory; name a JSONL file")
    # Lines read as bytes and decoded one by one, so a bad byte is named by its line; a
    # byte-order mark at the start (what PowerShell 5 and Notepad's "UTF-8 with BOM" write) is
    # read past, not refused as bad JSON on line 1.
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                line = raw.decode("utf-8-sig" if number == 1 else "utf-8")
            except UnicodeDecodeError as exc:
                raise InvalidInputError("FILE", f"{path} is not valid UTF-8 ({exc.reason}) on "
                                        f"line {number}, byte {exc.start + 1}") from None
            if line.strip():
                yield number, line


def _parse(model: type[_M], raw: object, number: int, what: str) -> _M:
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        error = invalid_input(exc)
        raise InvalidInputError(f"line {number}",
                                f"bad {what}: {error.field}: {error.problem}") from None


MAX_REPORTED_LINES = 20  # bad lines one import names before it stops reading
_UNREADABLE = object()  # a line that is not JSON (JSON's own null is a line to refuse)


def read_session_file(path: Path) -> SessionFile:
    """Parse and validate every line first, so a bad line 9,000 changes nothing stored. Every
    bad line is reported (the first MAX_REPORTED_LINES of them), not only the first: a file
    with 200 bad lines took 200 runs to mend (ut27)."""
    messages: list[Message] = []
    ledger: list[CompactionRecord] = []
    served: list[ServedContext] = []
    source: dict[str, Any] | None = None
    lines: list[int] = []
    seen: dict[str, int] = {}  # id -> line
    bad: list[InvalidInputError] = []
    for number, line in _lines(path):
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            bad.append(InvalidInputError(f"line {number}", f"is not valid JSON ({exc.msg})"))
            item = _UNREADABLE
        if item is _UNREADABLE:
            pass
        elif not isinstance(item, dict):
            bad.append(InvalidInputError(f"line {number}", "must be a JSON object"))
        elif "format" in item and number == 1:
            if item["format"] not in READABLE_FORMATS:
                raise InvalidInputError("line 1", f"unknown export format {item['format']!r}")
            source = item
        else:
            try:
                message = _line(item, number, ledger, served)
            except InvalidInputError as exc:
                bad.append(exc)
                message = None
            if message is not None and message.id in seen:
                bad.append(InvalidInputError(f"line {number}", f"message id {message.id!r} is "
                                             f"already on line {seen[message.id]}"))
            elif message is not None:
                seen[message.id] = number
                messages.append(message)
                lines.append(number)
        if len(bad) >= MAX_REPORTED_LINES:
            break
    if bad:
        more = ("\n(reading stopped there: mend these and run it again)"
                if len(bad) >= MAX_REPORTED_LINES else "")
        raise InvalidInputError(bad[0].field, bad[0].problem + "".join(
            f"\n{e.field}: {e.problem}" for e in bad[1:]) + more)
    return SessionFile(messages=tuple(messages), lines=tuple(lines), ledger=tuple(ledger),
                       served=tuple(served), source=source)


def _line(item: dict[str, Any], number: int, ledger: list[CompactionRecord],
          served: list[ServedContext]) -> Message | None:
    """One line of a session file: a ledger record or served context (kept aside), or the
    message it holds."""
    if "ledger_record" in item:
        ledger.append(_parse(CompactionRecord, item["ledger_record"], number, "ledger record"))
        return None
    if "served_context" in item:
        served.append(_parse(ServedContext, item["served_context"], number, "served context"))
        return None
    if set(item) >= {"type", "data"} and isinstance(item["data"], dict):
        raise InvalidInputError(f"line {number}", "this is LangChain's messages_to_dict form; "
                                "convert each with longthread.integrations.langchain."
                                "from_langchain(messages_from_dict([line])[0], id, created_at) "
                                "and append those (docs/integrations.md)")
    if (size := content_over_limit(item)) is not None:
        raise InvalidInputError(f"line {number}", too_large("content", size, MAX_BATCH_BYTES,
                                                             content_only=True))
    try:
        (message,) = parse_messages([item])
    except InvalidInputError as exc:
        field = exc.field.removeprefix("messages[0].")
        raise InvalidInputError(f"line {number}", f"{field}: {exc.problem}") from None
    return message


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
    weights = [len(record.model_dump_json().encode("utf-8")) + 1  # and its comma
               for record in parsed]
    for n, bytes_ in enumerate(weights):
        if bytes_ > limit:
            raise InvalidInputError(f"records[{n}]", f"is {bytes_} bytes; the limit for one "
                                    f"record is {limit} bytes (Temporal caps a payload at 2 MB)")
    return [(start, tuple(parsed[start:stop]))
            for start, stop in split_by_size(weights, len(weights), limit)] or [(0, ())]


def ledger_left(existing: Sequence[CompactionRecord], filed: Sequence[CompactionRecord]
                ) -> list[CompactionRecord]:
    """The file's records still to restore onto a session that holds `existing`: a ledger is
    restored in parts, and an import stopped between them is finished by importing the file
    again (and the copy may have compacted on its own since; the file's ledger is then a
    prefix of its own). Records are matched by what they did, not only by id: ids are
    positions (c1, c2 …), so a session that had compacted on its own first passed as "the
    same import" and then failed on a record naming messages its window no longer held
    (user test, session 31)."""
    def did(r: CompactionRecord) -> tuple[object, ...]:
        return (r.id, r.trigger, r.covered_ids, r.undoes)

    for n, (mine, theirs) in enumerate(zip(existing, filed, strict=False)):
        if did(mine) != did(theirs):
            raise InvalidInputError("FILE", (
                f"the session already has a ledger of its own: its record {n + 1} ({mine.id}, "
                f"{mine.trigger}, {len(mine.covered_ids)} messages) is not the file's "
                f"({theirs.id}, {theirs.trigger}, {len(theirs.covered_ids)} messages), so "
                "the file's ledger cannot be restored onto it; import the file into a new "
                "session"))
    return list(filed[len(existing):])


def message_parts(messages: Sequence[Message], lines: Sequence[int], count: int, limit: int
                  ) -> list[tuple[int, tuple[Message, ...]]]:
    """The file's messages in consecutive batches of at most `count` messages and `limit` bytes
    (`message_bytes`), with the index of each batch's first message: two large tool results
    that were each appended alone must re-import together with the default `--batch`. A
    message that alone is over `limit` could never be appended; it is refused here, by its
    line and largest field, before anything is stored."""
    weights = [message_bytes(m) for m in messages]
    for message, line, weight in zip(messages, lines, weights, strict=True):
        if weight > limit:
            raise InvalidInputError(f"line {line}", too_large(largest_field(message), weight,
                                                               limit))
    return [(start, tuple(messages[start:stop]))
            for start, stop in split_by_size(weights, count, limit)]


def at_line(exc: InvalidInputError, lines: Sequence[int], start: int) -> InvalidInputError:
    """An error about `messages[i]` of a batch that starts at message `start` (a conflicting
    id, found only when storing), as the file line that message came from: the batch index
    means nothing to someone holding the file. Any other error is returned as it is."""
    found = re.fullmatch(r"messages\[(\d+)\]\.?(.*)", exc.field, re.S)
    if not found or not 0 <= start + int(found[1]) < len(lines):
        return exc
    problem = f"{found[2]}: {exc.problem}" if found[2] else exc.problem
    return InvalidInputError(f"line {lines[start + int(found[1])]}", problem)
