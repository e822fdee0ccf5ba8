"""Rows of the messages table back into frozen models."""

from __future__ import annotations

from typing import Any

from memory.models import Message, ToolCall

__all__ = ["MESSAGE_COLUMNS", "message_columns", "row_to_message"]


def message_columns(table: str = "") -> str:
    """What a Message is built from, and its seq: never `SELECT *`, which would also carry the
    embedding (384 floats parsed into numpy per row) and the tsvector, both unused here. Empty
    tool calls and metadata (most rows) come back as NULL, so they cost no JSON parsing."""
    t = f"{table}." if table else ""
    return (f"{t}id, {t}seq, {t}role, {t}content, {t}name, {t}created_at, {t}tool_call_id,"
            f" nullif({t}tool_calls, '[]') AS tool_calls, nullif({t}metadata, '{{}}') AS metadata")


MESSAGE_COLUMNS = message_columns()


def row_to_message(row: dict[str, Any]) -> Message:
    """A stored row as a Message, without validating it again: every row was validated (as a
    Message) before it was inserted, and the archive never changes it."""
    return Message.model_construct(
        id=row["id"], role=row["role"], content=row["content"], created_at=row["created_at"],
        name=row["name"], tool_call_id=row["tool_call_id"],
        tool_calls=tuple(ToolCall.model_construct(**c) for c in row["tool_calls"] or ()),
        metadata=row["metadata"] if row["metadata"] is not None else {},
    )
