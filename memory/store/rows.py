"""Rows of the messages table back into frozen models."""

from __future__ import annotations

from typing import Any

from memory.models import Message, ToolCall

__all__ = ["row_to_message"]


def row_to_message(row: dict[str, Any]) -> Message:
    return Message(
        id=row["id"], role=row["role"], content=row["content"], created_at=row["created_at"],
        name=row["name"], tool_call_id=row["tool_call_id"],
        tool_calls=tuple(ToolCall.model_validate(c) for c in row["tool_calls"]),
        metadata=row["metadata"],
    )
