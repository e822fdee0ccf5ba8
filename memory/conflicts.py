"""Why a message re-sent under a known id is refused: what differs from the stored copy.

A user test re-sent a turn with the same text but no `created_at`, and was told it came "with
other content". The refusal now names the fields of `message_digest` that differ, quoting at
most a short piece of any value (bodies reach 2 MB). The store and `memory.Session` both use it.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from memory.errors import InvalidInputError
from memory.messages import utc_instant
from memory.models import Message

__all__ = ["conflict_error"]



_QUOTED = 60  # at most this many characters of any value a refusal quotes


def _short(value: str) -> str:
    return repr(value if len(value) <= _QUOTED else value[:_QUOTED - 3] + "...")


def _shown(value: str | None) -> str:
    return "none" if value is None else _short(value)


def _instant(value: datetime | None) -> str:
    return "none" if value is None else value.isoformat()


def _utc(value: datetime | None) -> datetime | None:
    return None if value is None else utc_instant(value)


def _form(text: str) -> str:
    return next((f for f in ("NFC", "NFD") if unicodedata.is_normalized(f, text)), "mixed")


def _content_hint(stored: str, sent: str) -> str:
    if unicodedata.normalize("NFC", stored) == unicodedata.normalize("NFC", sent):
        # "ë" as one character or as e + U+0308: the same text to a reader, not to the store
        return (f"the same text in another Unicode normalization (stored {_form(stored)}, "
                f"sent {_form(sent)}): send it as it was first sent")
    at = next((i for i, (a, b) in enumerate(zip(stored, sent, strict=False)) if a != b),
              min(len(stored), len(sent)))
    return (f"stored {len(stored)} characters, sent {len(sent)}; "
            f"first difference at offset {at}")


def _calls_hint(stored: Sequence[Any], sent: Sequence[Any]) -> str:
    if len(stored) != len(sent):
        return f"stored {len(stored)} calls, sent {len(sent)}"
    for index, (old, new) in enumerate(zip(stored, sent, strict=True)):
        for field in ("id", "name", "arguments"):
            if old.get(field) != new.get(field):
                return f"call {index} has another {field}" if field != "arguments" \
                    else f"call {index} has other arguments"
    return "they differ"


def _same(a: Any, b: Any) -> bool:
    """Equal as JSON values once stored: Postgres's jsonb reorders object keys and writes
    1e20 as 100000000000000000000, so neither makes metadata "other"; true is still not 1."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    return bool(a == b)


def _metadata_hint(stored: dict[str, Any], sent: dict[str, Any]) -> str:
    changed = [k for k in sent if k in stored and not _same(sent[k], stored[k])]
    parts = []
    for verb, keys in (("adds", [k for k in sent if k not in stored]),
                       ("drops", [k for k in stored if k not in sent]), ("changes", changed)):
        if keys:
            shown = ", ".join(_short(k) for k in sorted(keys)[:3])
            parts.append(f"{verb} {shown}" + (f" and {len(keys) - 3} more"
                                               if len(keys) > 3 else ""))
    return "sent " + ", ".join(parts) if parts else "they differ"


def _differences(stored: Message, sent: Message) -> list[str]:
    """What makes `sent` another message than `stored` under the same id: the fields of
    `message_digest` (the model's JSON form, the instant in UTC), content first."""
    old, new = stored.model_dump(mode="json"), sent.model_dump(mode="json")
    found = []
    if old["content"] != new["content"]:
        found.append(f"other content ({_content_hint(stored.content, sent.content)})")
    for field in ("role", "name"):
        if old[field] != new[field]:
            found.append(f"another {field} (stored {_shown(old[field])}, "
                         f"sent {_shown(new[field])})")
    if _utc(stored.created_at) != _utc(sent.created_at):
        found.append(f"another created_at (stored {_instant(_utc(stored.created_at))}, "
                     f"sent {_instant(sent.created_at)})")
    if old["tool_call_id"] != new["tool_call_id"]:
        found.append(f"another tool_call_id (stored {_shown(old['tool_call_id'])}, "
                     f"sent {_shown(new['tool_call_id'])})")
    if old["tool_calls"] != new["tool_calls"]:
        found.append(f"other tool_calls ({_calls_hint(old['tool_calls'], new['tool_calls'])})")
    if not _same(old["metadata"], new["metadata"]):
        found.append(f"other metadata ({_metadata_hint(old['metadata'], new['metadata'])})")
    return found


def conflict_error(index: int, sent: Message, stored: Message | None) -> InvalidInputError:
    """The refusal of `sent` (batch position `index`), whose id is stored (`stored`, if it is
    still there) with another digest: it names what differs. When nothing shows (the stored
    copy is gone, or its digest was made otherwise) it says "other content", as it always did."""
    found = _differences(stored, sent) if stored is not None else []
    return InvalidInputError(f"messages[{index}].id", f"{sent.id!r} was already appended with "
                             + (" and ".join(found) if found else "other content"))


