"""Anthropic's extended-thinking blocks, kept with the assistant message that produced them.

With thinking on, a Claude agent that calls tools must send back the turn's `thinking` (or
`redacted_thinking`) blocks unmodified, first in the assistant message whose `tool_use` the
request answers: the API refuses the request otherwise ("Expected `thinking` or
`redacted_thinking`, but found `tool_use`"), and a block whose text or signature changed
fails its signature check. So the blocks are stored exactly, in the message's metadata under
THINKING, and sent only where the API needs them: with the running turn's tool steps
(assembly version 15, `memory.assembly`), counted in its budget. Older turns' blocks stay
stored, not sent: the API no longer needs them once a turn is over.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from pydantic import JsonValue

from memory.errors import InvalidInputError
from memory.tokens import TokenCounter
from memory.units import turn_over, turn_start

if TYPE_CHECKING:
    from memory.messages import Message  # which imports this module

__all__ = [
    "THINKING",
    "THINKING_TYPES",
    "TurnThinking",
    "check_block",
    "check_thinking",
    "thinking_blocks",
    "thinking_cost",
    "turn_thinking",
]

THINKING = "anthropic_thinking"
THINKING_TYPES = ("thinking", "redacted_thinking")
_FIELDS = {"thinking": ("thinking", "signature"), "redacted_thinking": ("data",)}

Block = dict[str, JsonValue]
TurnThinking = dict[str, tuple[tuple[Block, ...], int]]  # message id → its blocks, their cost


def check_thinking(where: str, blocks: object) -> list[Block]:
    """The blocks as Anthropic returns them, or InvalidInputError naming the first wrong field."""
    if not isinstance(blocks, list):
        raise InvalidInputError(where, f"must be a list of thinking blocks, not "
                                f"{type(blocks).__name__}")
    return [check_block(f"{where}[{index}]", block) for index, block in enumerate(blocks)]


def check_block(where: str, block: object) -> Block:
    """One block, with exactly its fields: anything else would be dropped on the way back, or
    refused there."""
    if not isinstance(block, dict) or block.get("type") not in _FIELDS:
        raise InvalidInputError(f"{where}.type", "must be 'thinking' or 'redacted_thinking'")
    fields = _FIELDS[str(block["type"])]
    for key in fields:
        if not isinstance(block.get(key), str):
            raise InvalidInputError(f"{where}.{key}", f"must be text, as Anthropic returned "
                                    f"it (got {type(block.get(key)).__name__})")
    extra = sorted(set(block) - {"type", *fields})
    if extra:
        raise InvalidInputError(f"{where}.{extra[0]}", f"unexpected in a {block['type']} block")
    return {key: block[key] for key in ("type", *fields)}


def thinking_blocks(role: str, metadata: dict[str, JsonValue]) -> tuple[Block, ...]:
    """The blocks stored with an assistant message; none when its metadata holds something
    else under the key (it was stored before the key meant this, and is not sent)."""
    if role != "assistant" or THINKING not in metadata:
        return ()
    try:
        return tuple(check_thinking(THINKING, metadata[THINKING]))
    except InvalidInputError:
        return ()


def thinking_cost(counter: TokenCounter, blocks: Sequence[Block]) -> int:
    """What the blocks add to a request: the reasoning text, or the encrypted data of a
    redacted block (an overcount, never an undercount, of what it stands for)."""
    return sum(counter.count(str(b.get("thinking", b.get("data", "")))) for b in blocks)


def turn_thinking(units: Sequence[Sequence[Message]], counter: TokenCounter) -> TurnThinking:
    """The blocks the running turn's tool steps are sent with, by message id, with what each
    message's blocks cost.

    The turn is what follows the user's last message: a tool-use loop is one assistant turn,
    and a user message right after a tool result goes in the same API message as that result,
    so it does not end it. A step is sent with its blocks when a result answers one of its
    calls (a call still waiting is not sent, so neither is its thinking). A turn whose newest
    unit is a reply without calls is over: the next request starts a new one, and needs none.
    """
    if turn_over(units):
        return {}
    opened = turn_start(units)
    start = 0 if opened is None else opened + 1
    found: TurnThinking = {}
    for unit in units[start:]:
        answered = {m.tool_call_id for m in unit if m.role == "tool"}
        for m in unit:
            if m.tool_calls and not any(c.id in answered for c in m.tool_calls):
                continue
            if blocks := thinking_blocks(m.role, m.metadata):
                found[m.id] = (blocks, thinking_cost(counter, blocks))
    return found
