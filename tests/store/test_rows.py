"""Stored rows built without model_construct are the same objects model_construct builds."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import BaseModel, PrivateAttr, ValidationError

from memory.models import Message, ScoredMessage, ToolCall
from memory.store.rows import _plain, row_to_message, row_to_scored

WHEN = datetime(2023, 5, 8, 13, 56, tzinfo=UTC)

ROWS: list[dict[str, Any]] = [
    {"id": "m1", "seq": 4, "role": "user", "content": "hello", "name": "Caroline",
     "created_at": WHEN, "tool_call_id": None, "tool_calls": None, "metadata": None},
    {"id": "m2", "seq": 5, "role": "assistant", "content": "", "name": None,
     "created_at": None, "tool_call_id": None,
     "tool_calls": [{"id": "c1", "name": "search", "arguments": "{\"q\": 1}"}],
     "metadata": {"pinned": True}},
    {"id": "m3", "seq": 6, "role": "tool", "content": "42", "name": None, "created_at": WHEN,
     "tool_call_id": "c1", "tool_calls": None, "metadata": None},
]


def _constructed(row: dict[str, Any]) -> Message:
    """What rows.py built before: model_construct, every field given."""
    return Message.model_construct(
        id=row["id"], role=row["role"], content=row["content"], created_at=row["created_at"],
        name=row["name"], tool_call_id=row["tool_call_id"],
        tool_calls=tuple(ToolCall.model_construct(**c) for c in row["tool_calls"] or ()),
        metadata=row["metadata"] if row["metadata"] is not None else {})


@pytest.mark.parametrize("row", ROWS, ids=[r["id"] for r in ROWS])
def test_rows_build_what_model_construct_builds(row: dict[str, Any]) -> None:
    built, expected = row_to_message(row), _constructed(row)
    assert built == expected and type(built) is Message
    assert built.model_fields_set == expected.model_fields_set
    assert built.model_dump_json() == expected.model_dump_json()
    assert built.__pydantic_extra__ == expected.__pydantic_extra__
    assert built.__pydantic_private__ == expected.__pydantic_private__
    assert Message.model_validate(built.model_dump()) == built  # a valid message
    scored = row_to_scored(row, 0.25, "s")
    other = ScoredMessage.model_construct(message=expected, score=0.25, session="s",
                                          seq=row["seq"])
    assert scored == other and scored.model_fields_set == other.model_fields_set
    assert scored.model_dump_json() == other.model_dump_json()
    with pytest.raises(ValidationError):  # frozen, as a constructed model is
        scored.score = 1.0  # type: ignore[misc]


def test_only_plain_models_are_built_this_way() -> None:
    class WithPrivate(BaseModel):
        x: int = 0
        _cache: int = PrivateAttr(default=0)

    class WithPostInit(BaseModel):
        x: int = 0

        def model_post_init(self, context: Any, /) -> None:
            pass

    for cls in (WithPrivate, WithPostInit):
        with pytest.raises(TypeError):
            _plain(cls)
    assert _plain(Message) == frozenset(Message.model_fields)
