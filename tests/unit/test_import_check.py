"""`import` checks a file's ledger against its own messages before storing anything, hashing
them as the archive will give them back (jsonb's key order and numbers)."""

from __future__ import annotations

import pytest
from pydantic import JsonValue

from longthread.commands import check_file_ledger
from longthread.transfer import SessionFile
from memory.errors import InvalidInputError
from memory.messages import as_jsonb
from memory.policy import CompactionPolicy
from memory.session import Session

# As an export writes metadata: in jsonb's order (shorter keys first), numbers as it keeps them.
STORED: dict[str, JsonValue] = {"z": 1, "ab": {"y": 2, "xx": [3]}, "big": 10**16, "tag": "refund"}


def _exported() -> SessionFile:
    session = Session("t", policy=CompactionPolicy(context_window=4000, preserve_recent=2),
                      auto_compact=False)
    session.add_messages([{"id": f"m{i}", "role": "user", "metadata": STORED,
                           "content": f"Parcel {4700 + i} went to depot {i}."}
                          for i in range(12)])
    assert session.compact() is not None
    return SessionFile(messages=tuple(session.messages), ledger=tuple(session.ledger))


def test_metadata_re_sorted_by_a_tool_still_imports() -> None:
    """`jq -S` on an export sorts every object's keys and may write 1e16 as a float: the
    worker, hashing what jsonb gives back, would match, so the check must too (it refused)."""
    exported = _exported()
    check_file_ledger(exported)
    resorted: dict[str, JsonValue] = {"ab": {"xx": [3], "y": 2}, "big": 1e16, "tag": "refund",
                                      "z": 1}
    assert list(resorted) != list(STORED) and as_jsonb(resorted) == STORED
    edited = SessionFile(ledger=exported.ledger, messages=tuple(
        m.model_copy(update={"metadata": resorted}) for m in exported.messages))
    check_file_ledger(edited)


def test_an_edited_covered_message_is_still_refused() -> None:
    exported = _exported()
    messages = list(exported.messages)
    messages[3] = messages[3].model_copy(update={"content": "Parcel 4703 went to depot 9."})
    with pytest.raises(InvalidInputError, match=r"^records\[0\]: ledger record 'c1'"):
        check_file_ledger(SessionFile(messages=tuple(messages), ledger=exported.ledger))


def test_jsonb_order_is_postgres_order() -> None:
    """Checked against Postgres 18 (SELECT '...'::jsonb) when written."""
    doc: JsonValue = {"bb": 1, "a": 2, "é": 5, "c": {"zz": 1, "y": [{"b": 1, "a": 2}]},
                      "aa": 4, "Z": 0}
    assert list(as_jsonb(doc)) == ["Z", "a", "c", "aa", "bb", "é"]  # type: ignore[arg-type]
    assert as_jsonb(1.2345678901234568e+17) == 123456789012345680
    assert as_jsonb(2.5e-07) == 2.5e-07 and as_jsonb(123.0) == 123.0
