"""The newest turn, cut to fit (assembly version 12).

The newest tool unit (a call and its results, or a user turn) is usually what the model must
answer. When it alone was larger than the budget, assembly left the recent section empty and
filled the window with older material, with no notice: an agent whose test log or 64 parallel
results outgrew a 2,000-token window got a window of nothing or of old quotes. Now the unit is
shown whole in its structure (every call with every result, so no pair is split) with the
longest contents cut to a head and a note naming the message to read in full from the archive.
A cut message is not verbatim, so its id is not in `source_ids`.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence

from memory.models import ContextMessage, Message, Section
from memory.text import scripts_on
from memory.tokens import TokenCounter, message_cost

__all__ = ["NEWEST_CUT_SHARE", "cut_unit", "grapheme_start"]

# Of the budget left after system messages, what a cut newest turn may take: most of it, since
# it is the turn being answered, but not all, so the summaries and a retrieved line or two still
# tell the model where the conversation stands.
NEWEST_CUT_SHARE = 0.75
_MIN_HEAD_TOKENS = 16  # a cut shorter than this says nothing: below it the unit is not shown


def _note(message: Message, dropped: int) -> str:
    return (f"\n[… cut to fit: {dropped} more characters; the whole message is in the archive "
            f"as {message.id}]")


_JOINED_TO_BEFORE = frozenset("\u200d\ufe0e\ufe0f")  # a joiner and the emoji/text selectors
_VIRAMA = 9  # the canonical combining class of a virama (Devanagari ्, Bengali ্, ...)


def _head(message: Message, tokens: int, counter: TokenCounter) -> str:
    """The longest prefix of the content that, with its note, costs at most `tokens`."""
    text = message.content
    low, high = 0, len(text)
    while low < high:  # the longest length whose cut text fits (counts grow with the prefix)
        mid = (low + high + 1) // 2
        if counter.count(text[:mid] + _note(message, len(text) - mid)) <= tokens:
            low = mid
        else:
            high = mid - 1
    if scripts_on():  # back to a cluster's start; fewer characters can still count more
        low = grapheme_start(text, low)  # (a code-like share crossing 1 in 12), so re-check
        while low > 0 and counter.count(text[:low] + _note(message, len(text) - low)) > tokens:
            low = grapheme_start(text, low - 1)
    return text[:low] + _note(message, len(text) - low)


def grapheme_start(text: str, at: int) -> int:
    """`at`, or the nearest cut before it that splits no character a reader sees as one: not
    before a combining mark, a joiner or an emoji modifier, not after a joiner or a virama
    (नमस् | ते left a dangling virama, 👩‍👩‍👧 | ‍👦 a dangling joiner; session 29's user test).
    An approximation of Unicode's extended grapheme clusters (UAX #29) that needs no
    third-party segmenter; assembly uses it from version 17 (`memory.text.text_rules`)."""
    while 0 < at < len(text) and (
            unicodedata.category(text[at]).startswith("M") or text[at] in _JOINED_TO_BEFORE
            or "\U0001f3fb" <= text[at] <= "\U0001f3ff" or text[at - 1] == "\u200d"
            or unicodedata.combining(text[at - 1]) == _VIRAMA):
        at -= 1
    return at


def cut_unit(unit: Sequence[Message], budget: int, counter: TokenCounter,
             section: Section = "recent") -> list[ContextMessage] | None:
    """The unit within `budget`, its longest contents cut to equal shares (water-filling: one
    shorter than its share stays whole, and what it leaves goes to the others); None when even
    its structure (roles, tool calls, call ids) or a useful head of each cut content does not
    fit. Tool calls' arguments are never cut: a call must reach the provider as it was made."""
    bare = [message_cost(counter, m.model_copy(update={"content": ""})) for m in unit]
    whole = [message_cost(counter, m) - b for m, b in zip(unit, bare, strict=True)]
    room = budget - sum(bare)
    if room <= 0:
        return None
    share: dict[int, int] = {}
    open_ = sorted(range(len(unit)), key=lambda i: whole[i])
    while open_:  # the smallest first: whole if it fits its equal share of what is left
        equal = room // len(open_)
        i = open_[0]
        if whole[i] > equal:
            break
        share[i] = whole[i]
        room -= whole[i]
        open_.pop(0)
    equal = room // len(open_) if open_ else 0
    if open_ and equal < _MIN_HEAD_TOKENS + max(counter.count(_note(unit[i], 10**6))
                                                for i in open_):
        return None  # the notes alone would fill the shares: no head worth showing
    out: list[ContextMessage] = []
    for i, message in enumerate(unit):  # (a note alone may outgrow a tiny share: checked below)
        cut = i not in share
        content = _head(message, equal, counter) if cut else message.content
        shown = message.model_copy(update={"content": content})
        out.append(ContextMessage(
            role=message.role, content=content, source_ids=() if cut else (message.id,),
            section=section, name=message.name, tool_call_id=message.tool_call_id,
            tool_calls=message.tool_calls, tokens=message_cost(counter, shown)))
    return out if sum(m.tokens for m in out) <= budget else None
