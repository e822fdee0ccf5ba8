"""Render a ContextWindow for the two provider wire formats.

OpenAI takes system messages inline; Anthropic takes them as a separate `system` parameter,
wants tool calls as `tool_use` blocks and results as `tool_result` blocks in a user turn, and
accepts at most four `cache_control` breakpoints, which we place on the stable prefix (the end
of the original system prompt and the end of the summaries).

Rendering is a pure function of the window, so what was sent can always be rebuilt from what
`replay` rebuilds; the window's digest covers the window, not these wire details.
"""

from __future__ import annotations

import json
import re

from pydantic import JsonValue

from memory.checks import check_json_depth
from memory.errors import InvalidInputError
from memory.models import ContextMessage, ContextWindow, ToolCall
from memory.thinking import THINKING_TYPES

__all__ = ["CONTINUED", "MAX_CACHE_BREAKPOINTS", "to_anthropic", "to_openai", "to_responses",
           "tool_arguments", "unanswered_calls"]

MAX_CACHE_BREAKPOINTS = 4
# Anthropic (and Bedrock) refuse a conversation whose first turn is the assistant's ("first
# message must use the user role"). After a compaction the oldest kept turn is often the
# model's reply (or a budget cut there), so a request that would start with it gets this
# user turn first. It claims nothing about what came before: summaries and retrieved evidence,
# if any, are in `system`.
CONTINUED = "(The conversation continues from earlier turns.)"
JsonDict = dict[str, JsonValue]


_OUTSIDE_API_ALPHABET = re.compile(r"[^A-Za-z0-9_-]")


def _in_api_alphabet(text: str) -> str:
    """Both APIs take tool call ids, and OpenAI a participant's name, only in
    `[A-Za-z0-9_-]`: other characters (a space, `.`, `:`, an accented letter) become `_`."""
    return _OUTSIDE_API_ALPHABET.sub("_", text)


class _Pairs:
    """The ids sent for tool calls and results, so that both APIs accept the request.

    A result answers the first unanswered call with its id in the latest message that made a
    call with that id: as assembly's `tool_units` pairs them (and places results after it).
    - A call no result answers is not sent: both APIs refuse a request carrying one (its
      result was never appended, or it is pending).
    - A result that answers nothing (its call is not in the window, or was answered already)
      is not sent: both refuse an orphan result, Anthropic also a second result to a call.
    - Ids are sent in Anthropic's alphabet (`[A-Za-z0-9_-]`; other characters become `_`)
      and unique in the request: an id used again (some agents and local models number
      calls per turn) gets a suffix, and its results follow it.
    The stored messages and the window's digest keep their ids; this is only how they are sent.
    """

    def __init__(self, window: ContextWindow) -> None:
        latest: dict[str, int] = {}  # call id → the latest message that made such a call
        unanswered: dict[tuple[int, str], list[int]] = {}  # (message, call id) → its calls
        answers: dict[int, tuple[int, int]] = {}  # result message → (message, call)
        for i, m in enumerate(window.messages):
            for j, call in enumerate(m.tool_calls):
                latest[call.id] = i
                unanswered.setdefault((i, call.id), []).append(j)
            if m.role == "tool" and m.tool_call_id in latest:
                pending = unanswered[latest[m.tool_call_id], m.tool_call_id]
                if pending:
                    answers[i] = (latest[m.tool_call_id], pending.pop(0))
        taken = {_in_api_alphabet(c.id) for m in window.messages for c in m.tool_calls}
        self.calls: dict[tuple[int, int], str] = {}  # (message, call) → id, answered only
        sent: set[str] = set()
        for i, j in sorted(set(answers.values())):
            safe = _in_api_alphabet(window.messages[i].tool_calls[j].id)
            self.calls[i, j] = _fresh(safe, taken) if safe in sent else safe
            sent.add(self.calls[i, j])
        self.results = {r: self.calls[at] for r, at in answers.items()}  # message → its call

    def sent_calls(self, index: int, m: ContextMessage) -> list[tuple[str, ToolCall]]:
        return [(self.calls[index, j], c) for j, c in enumerate(m.tool_calls)
                if (index, j) in self.calls]


def unanswered_calls(window: ContextWindow) -> list[str]:
    """The ids of the calls in the window no result answers (so neither renderer sends
    them), in window order: an id made twice and answered once is listed once."""
    pairs = _Pairs(window)
    return [c.id for i, m in enumerate(window.messages) for j, c in enumerate(m.tool_calls)
            if (i, j) not in pairs.calls]


def _fresh(call_id: str, taken: set[str]) -> str:
    n = 2
    while f"{call_id}_{n}" in taken:
        n += 1
    taken.add(f"{call_id}_{n}")
    return f"{call_id}_{n}"


def to_openai(window: ContextWindow) -> list[JsonDict]:
    out: list[JsonDict] = []
    pairs = _Pairs(window)
    for i, m in enumerate(window.messages):
        calls = pairs.sent_calls(i, m)
        if m.role == "assistant" and m.tool_calls and not calls and not m.content.strip():
            continue  # only unanswered calls: nothing left to send
        if m.role == "tool" and i not in pairs.results:
            continue  # answers no call sent
        item: JsonDict = {"role": m.role, "content": m.content}
        if m.name and m.role in ("user", "assistant", "system"):
            item["name"] = _in_api_alphabet(m.name)[:64]
        if calls:
            item["tool_calls"] = [
                {"id": sent, "type": "function",
                 "function": {"name": c.name, "arguments": c.arguments}}
                for sent, c in calls
            ]
        if m.role == "tool":
            item["tool_call_id"] = pairs.results[i]
        out.append(item)
    return out


def to_responses(window: ContextWindow) -> list[JsonDict]:
    """`input=` for OpenAI's Responses API: messages as easy input messages (system inline),
    each answered call as a `function_call` item after its message's text, each result as a
    `function_call_output`. The call pairs and ids are those `to_openai` sends. Items carry no
    `id`: the API would then look for the reasoning item stored with it, and refuse the
    request without one. The API has no participant names, so `name` is not sent."""
    out: list[JsonDict] = []
    pairs = _Pairs(window)
    for i, m in enumerate(window.messages):
        if m.role == "tool":
            if i in pairs.results:  # else it answers no call sent
                out.append({"type": "function_call_output", "call_id": pairs.results[i],
                            "output": m.content})
            continue
        if m.content.strip() or not m.tool_calls:
            out.append({"type": "message", "role": m.role, "content": m.content})
        out += [{"type": "function_call", "call_id": sent, "name": c.name,
                 "arguments": c.arguments} for sent, c in pairs.sent_calls(i, m)]
    return out


def tool_arguments(text: str) -> dict[str, JsonValue]:
    """A call's arguments as the object Anthropic's `input` (and LangChain's `args`) takes:
    stored verbatim, they may be no JSON, or JSON nested deeper than what reads or writes it
    recurses into: a stored call of 50,000 nested arrays broke every Anthropic window of its
    session, and one of 250 the MCP tool's serialization. Past MAX_JSON_DEPTH levels they
    are sent as text."""
    try:
        value: JsonValue = json.loads(text)
        check_json_depth("arguments", value)
    except (json.JSONDecodeError, RecursionError, InvalidInputError):
        return {"raw": text}
    return value if isinstance(value, dict) else {"value": value}


def _blocks(index: int, m: ContextMessage, pairs: _Pairs) -> list[JsonDict]:
    if m.role == "tool":
        answers = pairs.results.get(index)
        if answers is None:
            return []  # answers no call sent
        return [{"type": "tool_result", "tool_use_id": answers, "content": m.content}]
    blocks: list[JsonDict] = []
    if m.content.strip():
        blocks.append({"type": "text", "text": m.content})
    for sent, call in pairs.sent_calls(index, m):
        blocks.append({"type": "tool_use", "id": sent, "name": call.name,
                       "input": tool_arguments(call.arguments)})
    # The turn's thinking goes first, exactly as stored, with what it led to; alone (its
    # calls not answered yet, so not sent) it is not sent either.
    return [dict(b) for b in m.thinking] + blocks if blocks else []


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
    pairs = _Pairs(window)
    for i, m in enumerate(window.messages):
        if m.role == "system":
            continue
        role = "assistant" if m.role == "assistant" else "user"
        blocks = _blocks(i, m, pairs)
        if not blocks:
            continue
        if messages and messages[-1]["role"] == role:
            previous = messages[-1]["content"]
            assert isinstance(previous, list)
            previous.extend(blocks)
            # An assistant message must open with its thinking: a stable sort keeps the order
            # of the thinking blocks, and of the rest.
            previous.sort(key=lambda block: not (isinstance(block, dict)
                                                 and block.get("type") in THINKING_TYPES))
        else:
            messages.append({"role": role, "content": list(blocks)})
    if messages and messages[0]["role"] == "assistant":
        messages.insert(0, {"role": "user", "content": [{"type": "text", "text": CONTINUED}]})
    return system, messages
