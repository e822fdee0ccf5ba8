"""The limits of what can be stored, and the checks that enforce them with an error naming the
field and the limit. Pure Python and pydantic, importable inside the workflow sandbox."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Literal

from pydantic import ValidationError

from memory.errors import InvalidInputError

__all__ = [
    "INVISIBLE_IN_IDS",
    "MAX_CONTENT_BYTES",
    "MAX_ID_CHARS",
    "MAX_JSON_DEPTH",
    "MAX_NAME_CHARS",
    "MAX_TOOL_CALLS",
    "ROLES",
    "Role",
    "check_id",
    "check_instant",
    "check_json",
    "check_json_depth",
    "check_new_id",
    "check_search",
    "check_text",
    "check_texts",
    "invalid_input",
]

Role = Literal["system", "user", "assistant", "tool"]
ROLES: tuple[str, ...] = ("system", "user", "assistant", "tool")

# A Temporal payload is capped at 2 MB; bodies are carried by reference above a threshold, but
# one message may never exceed this, so it can always be archived in a single row.
MAX_CONTENT_BYTES = 2_000_000
MAX_ID_CHARS = 200
MAX_NAME_CHARS = 200
MAX_TOOL_CALLS = 64
MAX_CONTEXT_TOKENS = 2_000_000  # a context() budget
MAX_QUERY_CHARS = 100_000  # a context() query
MAX_RETRIEVE = 500  # candidates a context() retrieves
MAX_NEIGHBOURS = 5  # turns around each hit
MAX_TURN = 2**31 - 1  # turns are Postgres integers

_CONTROL = re.compile("[\x00-\x1f]")  # C0 control characters, refused in ids
# What a new id may not hold besides: C1 controls and the format characters that make one id
# look like another ('tenant\u200bA' listed as 'tenantA'; a right-to-left override reverses
# what follows; session 25's security review, and for message ids session 29's user test,
# whose reversed id reached summaries, the ledger and the audit page). Also the fillers that
# render as nothing (Hangul fillers, U+034F, U+180E), interlinear annotation marks and the
# tag characters (U+E0000-E007F), which can carry text a reader never sees to the model.
# Joiners (U+200C, U+200D) stay: emoji sequences and Persian text need them. Checked where ids
# come in, not by the models, which also read what was stored before the rule.
INVISIBLE_IN_IDS = "[\x80-\x9f\u00ad\u034f\u061c\u115f\u1160\u180e\u200b\u200e\u200f" \
    "\u202a-\u202e\u2060-\u2064\u2066-\u2069\u3164\ufeff\uffa0\ufff9-\ufffb" \
    "\U000e0000-\U000e007f]"
_INVISIBLE = re.compile(INVISIBLE_IN_IDS)


def check_new_id(field: str, value: str) -> None:
    """An id arriving now: no invisible characters (above), and in Unicode NFC, so the "Zoë"
    a Mac keyboard sends (NFD, e + U+0308) is not a second "Zoë" beside the first, listed
    alike (session 29's user test opened two sessions that way)."""
    check_text(field, value)
    found = _INVISIBLE.search(value)
    if found:
        raise InvalidInputError(field, f"must not contain invisible or direction-changing "
                                f"characters (U+{ord(found[0]):04X} at offset {found.start()})")
    if not unicodedata.is_normalized("NFC", value):
        raise InvalidInputError(field, "must be in Unicode NFC form (unicodedata.normalize("
                                "'NFC', ...) gives it); the same characters decomposed would "
                                "be another id that looks the same")


def check_text(field: str, value: str) -> None:
    """Postgres text refuses NUL and lone surrogates cannot be encoded: refuse both up front."""
    if "\x00" in value:
        raise InvalidInputError(field, "contains a NUL character, which cannot be stored")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidInputError(field, f"is not valid UTF-8 ({exc.reason})") from None


def check_id(field: str, value: str) -> None:
    """An id is 1 to MAX_ID_CHARS characters of storable text, with no control characters."""
    if not value or len(value) > MAX_ID_CHARS:
        raise InvalidInputError(field, f"must be 1 to {MAX_ID_CHARS} characters")
    if _CONTROL.search(value):
        raise InvalidInputError(field, "must not contain control characters")
    if not value.strip():  # " " and "m1" look alike in every listing; refuse it up front
        raise InvalidInputError(field, "must not be blank")
    check_text(field, value)


def check_range(field: str, value: object, low: int, high: int) -> int:
    """A whole number from `low` to `high` (a bool or a numeric string is not one)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInputError(field, f"must be a whole number, not {type(value).__name__}")
    if not low <= value <= high:
        raise InvalidInputError(field, f"must be from {low} to {high:,}; got {value:,}")
    return value


def check_query(field: str, value: object) -> str | None:
    """A retrieval query: None, or text of at most MAX_QUERY_CHARS characters."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidInputError(field, f"must be text, not {type(value).__name__}")
    if len(value) > MAX_QUERY_CHARS:
        raise InvalidInputError(field, f"is {len(value):,} characters; the limit is "
                                f"{MAX_QUERY_CHARS:,}")
    check_text(field, value)
    return value


def check_search(field: str, value: object) -> str:
    """A search's query: `check_query`'s text, with something visible in it. Spaces and format
    characters alone ("\u200b") searched for nothing and returned whatever ranked first."""
    query = check_query(field, value) or ""
    if all(ch.isspace() or unicodedata.category(ch) == "Cf" for ch in query):
        raise InvalidInputError(field, "must not be empty")
    return query


def check_texts(field: str, values: Iterable[str | None]) -> None:
    for index, value in enumerate(values):
        if value is not None:
            check_text(f"{field}[{index}]", value)


MAX_JSON_DEPTH = 64  # nested objects and arrays in a message's metadata


def check_json_depth(field: str, value: object) -> None:
    """At most MAX_JSON_DEPTH levels, counted without recursion: 5,000 nested objects raised a
    RecursionError where the digest encodes them, and pydantic's error named a path as long as
    the nesting (session 25's security review)."""
    level: list[tuple[object, int]] = [(value, 1)]
    while level:
        item, depth = level.pop()
        children = item.values() if isinstance(item, dict) else \
            item if isinstance(item, list | tuple) else ()
        if children and depth > MAX_JSON_DEPTH:
            raise InvalidInputError(field, f"nests deeper than {MAX_JSON_DEPTH} levels")
        level.extend((child, depth + 1) for child in children)


def check_json(field: str, value: object) -> None:
    """Every key and string in a JSON value must be storable text (jsonb refuses NUL too)."""
    if isinstance(value, str):
        check_text(field, value)
    elif isinstance(value, dict):
        for key, item in value.items():
            check_text(f"{field} key {key!r:.40}", str(key))
            check_json(f"{field}.{key}", item)
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            check_json(f"{field}[{index}]", item)


def check_instant(field: str, value: datetime | None) -> None:
    """A time must name an instant inside years 1-9999 in UTC (naive times are taken as UTC):
    '0001-01-01T00:00+01:00' parses, but its UTC instant cannot be represented or digested."""
    if value is None or value.tzinfo is None:
        return
    try:
        value.astimezone(UTC)
    except (OverflowError, ValueError):
        raise InvalidInputError(
            field, f"{value.isoformat()} is outside years 1-9999 once converted to UTC"
        ) from None


def invalid_input(exc: ValidationError, prefix: str = "") -> InvalidInputError:
    """One clear error from pydantic's: the path of the first problem (`messages[2].id`) and
    what is wrong with it; `prefix` names where the validated object sits."""
    errors = exc.errors()
    first = errors[0]
    path = ""
    for part in first["loc"]:
        if isinstance(part, int):
            path += f"[{part}]"
        elif "[" in str(part) or "(" in str(part):  # a union or function tag, not a field
            continue
        else:
            path += f".{part}" if path else str(part)
    cause = (first.get("ctx") or {}).get("error")
    if isinstance(cause, InvalidInputError):
        text = cause.problem
        last = path.rsplit(".", 1)[-1]
        if cause.field == last or cause.field.startswith((f"{last}[", f"{last}.")):
            path = path[: len(path) - len(last)] + cause.field  # a field validator's own
        elif cause.field:  # a model validator's: the field inside the model at `path`
            path = f"{path}.{cause.field}" if path else cause.field
    elif isinstance(cause, ValueError):  # a validator's own words, without "Value error, "
        text = str(cause)
    else:
        text = str(first["msg"])
    if prefix:
        path = f"{prefix}.{path}" if path and not path.startswith("[") else f"{prefix}{path}"
    if len(errors) > 1:
        text += f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})"
    return InvalidInputError(path or exc.title, text)
