"""Importance scoring: which messages deserve to stay verbatim when the window is tight.

Signals are the ones users name when a summary lost something: recency, open questions,
decisions and commitments, named entities and numbers, tool results, and explicit pins.
A pinned message scores infinity and is never compacted away.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

from memory.models import Message

__all__ = ["importance", "prioritize"]

_DECISION = re.compile(
    r"\b(decided|decide|agreed|agree|will|must|shall|plan|deadline|approved|confirm(ed)?|"
    r"let's|we'll|action item|todo|next step)\b",
    re.IGNORECASE,
)
_ENTITY = re.compile(r"(?<!^)(?<![.!?]\s)\b[A-Z][a-zA-Z]+|\d")


def importance(message: Message, position: int, total: int) -> float:
    """A score in [0, ~4]; `position` is the 0-based index among `total` messages."""
    if message.pinned:
        return math.inf
    score = (position + 1) / max(total, 1)  # recency, 0..1
    text = message.content
    if "?" in text:
        score += 0.6
    if _DECISION.search(text):
        score += 0.8
    score += min(len(_ENTITY.findall(text)), 5) * 0.1
    if message.role == "tool" or message.tool_calls:
        score += 0.5
    if message.role == "system":
        score += 2.0
    return score


def prioritize(messages: Sequence[Message], keep: int) -> list[Message]:
    """The `keep` most important messages, returned in conversation order (ties: later wins)."""
    total = len(messages)
    ranked = sorted(
        range(total), key=lambda i: (-importance(messages[i], i, total), -i)
    )
    chosen = sorted(ranked[: max(keep, 0)])
    return [messages[i] for i in chosen]
