"""Rows of the messages table back into frozen models."""

from __future__ import annotations

from typing import Any

from memory.models import Message, ToolCall

__all__ = ["MESSAGE_COLUMNS", "row_to_message"]

# What a Message is built from, and its seq: never `SELECT *`, which would also carry the
# embedding (384 floats parsed into numpy per row) and the tsvector, both unused here.
MESSAGE_COLUMNS = ("id, seq, role, content, name, created_at, tool_call_id, tool_calls,"
                   " metadata")


def row_to_message(row: dict[str, Any]) -> Message:
    """A stored row as a Message, without validating it again: every row was validated (as a
    Message) before it was inserted, and the archive never changes it."""
    return Message.model_construct(
        id=row["id"], role=row["role"], content=row["content"], created_at=row["created_at"],
        name=row["name"], tool_call_id=row["tool_call_id"],
        tool_calls=tuple(ToolCall.model_construct(**c) for c in row["tool_calls"]),
        metadata=row["metadata"],
    )
