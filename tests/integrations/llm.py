"""Replies a loopback OpenAI server gives an agent: tool calls and final answers.

The loopback server itself is `tests/activities/loopback.py`; this adds the Chat Completions
reply that asks for a tool, which the Agents SDK turns into `function_call` items.
"""

from __future__ import annotations

import json
from typing import Any

from tests.activities.loopback import openai_chat

__all__ = ["openai_chat", "openai_tool_call", "sent_messages"]


def openai_tool_call(call_id: str, name: str, arguments: dict[str, Any],
                     model: str = "gpt-test") -> dict[str, Any]:
    return {"id": f"chatcmpl-{call_id}", "object": "chat.completion", "created": 0,
            "model": model,
            "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
                "role": "assistant", "content": None,
                "tool_calls": [{"id": call_id, "type": "function", "function": {
                    "name": name, "arguments": json.dumps(arguments)}}]}}],
            "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}}


def sent_messages(request: dict[str, Any]) -> list[dict[str, Any]]:
    """The `messages` of one recorded Chat Completions request."""
    messages = request["json"]["messages"]
    assert isinstance(messages, list)
    return messages
