"""Render a ContextWindow for the two provider wire formats.

OpenAI takes system messages inline; Anthropic takes them as a separate `system` parameter,
wants tool calls as `tool_use` blocks and results as `tool_result` blocks in a user turn, and
accepts at most four `cache_control` breakpoints, which we place on the stable prefix (the end
of the original system prompt and the end of the summaries).
"""

from __future__ import annotations

import json

from pydantic import JsonValue

from memory.models import ContextMessage, ContextWindow

__all__ = ["MAX_CACHE_BREAKPOINTS", "to_anthropic", "to_openai"]

MAX_CACHE_BREAKPOINTS = 4
JsonDict = dict[str, JsonValue]


def _answered(window: ContextWindow) -> set[str]:
    """Call ids that a tool result in the window answers. Both APIs refuse a request with a
    tool call that no result follows (a call whose result was never appended, or a pending
    one), so such calls are not sent; the window and its digest keep them as stored."""
    return {m.tool_call_id for m in window.messages if m.role == "tool" and m.tool_call_id}


def to_openai(window: ContextWindow) -> list[JsonDict]:
    out: list[JsonDict] = []
    answered = _answered(window)
    for m in window.messages:
        calls = [c for c in m.tool_calls if c.id in answered]
        if m.role == "assistant" and m.tool_calls and not calls and not m.content.strip():
            continue  # only unanswered calls: nothing left to send
        item: JsonDict = {"role": m.role, "content": m.content}
        if m.name and m.role in ("user", "assistant", "system"):
            item["name"] = "".join(c if c.isalnum() or c in "_-" else "_" for c in m.name)[:64]
        if calls:
            item["tool_calls"] = [
                {"id": c.id, "type": "function",
                 "function": {"name": c.name, "arguments": c.arguments}}
                for c in calls
            ]
        if m.tool_call_id:
            item["tool_call_id"] = m.tool_call_id
        out.append(item)
    return out


def _arguments(text: str) -> JsonValue:
    try:
        value: JsonValue = json.loads(text)
    except json.JSONDecodeError:
        return {"raw": text}
    return value if isinstance(value, dict) else {"value": value}


def _blocks(m: ContextMessage, answered: set[str]) -> list[JsonDict]:
    if m.role == "tool":
        return [{"type": "tool_result", "tool_use_id": m.tool_call_id, "content": m.content}]
    blocks: list[JsonDict] = []
    if m.content.strip():
        blocks.append({"type": "text", "text": m.content})
    for call in (c for c in m.tool_calls if c.id in answered):
        blocks.append({"type": "tool_use", "id": call.id, "name": call.name,
                       "input": _arguments(call.arguments)})
    return blocks


def to_anthropic(window: ContextWindow) -> tuple[list[JsonDict], list[JsonDict]]:
    """(system blocks, messages) for `client.messages.create(system=..., messages=...)`."""
    system_msgs = [m for m in window.messages if m.role == "system"]
    system: list[JsonDict] = [{"type": "text", "text": m.content} for m in system_msgs]
    # The stable prefix ends after the original system prompt and again after the summaries;
    # retrieved memory and recent turns change on every call, so they get no breakpoint.
    ends = [
        max((i for i, m in enumerate(system_msgs) if m.section == section), default=None)
        for section in ("system", "summary")
    ]
    for index in sorted({i for i in ends if i is not None})[:MAX_CACHE_BREAKPOINTS]:
        system[index] = {**system[index], "cache_control": {"type": "ephemeral"}}

    messages: list[JsonDict] = []
    answered = _answered(window)
    for m in window.messages:
        if m.role == "system":
            continue
        role = "assistant" if m.role == "assistant" else "user"
        blocks = _blocks(m, answered)
        if not blocks:
            continue
        if messages and messages[-1]["role"] == role:
            previous = messages[-1]["content"]
            assert isinstance(previous, list)
            previous.extend(blocks)
        else:
            messages.append({"role": role, "content": list(blocks)})
    return system, messages
