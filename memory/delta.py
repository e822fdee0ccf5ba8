"""Delta compression of repeated tool results (assembly version 13): a result that repeats a
newer result of the same tool with a few lines changed is shown as a line diff against it.

Why: an agent loop lists the same directory, re-reads the same file or polls the same status
again and again, and each result is nearly the one before. A user test's 2,000-turn loop held
144 file listings of 12 KB that differed by a line or two, each shown in full, so a window
held a handful of turns. Shown as diffs, most of a listing's tokens go to older turns instead.

Why against a newer result, not an older one: the recent conversation is a contiguous run of
turns back from the newest, so a newer turn is in the window whenever an older one is. The
base of every diff is therefore shown, and shown whole (a diff is never against a diff), so
a model reads any diff in one step, and `apply_line_delta(base, delta)` gives the older result
back byte for byte. The stored message is never changed; the window names its id (whole in
the archive), and its id is not among the window's `source_ids`, which list verbatim text only.

The diff is unified-diff hunks without context lines (`@@ -a,b +c,d @@`, `-` lines of the
base, `+` lines of this result), over the text split at "\\n" only, so line endings and a
missing final newline round-trip. Written here rather than with `difflib.unified_diff`,
which needs a patch tool to apply and marks a missing final newline in a way that does not
round-trip through `str.split`; `difflib.SequenceMatcher` still finds the matching lines.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from difflib import SequenceMatcher

from memory.models import ContextMessage, Message
from memory.tokens import TokenCounter, message_cost

__all__ = ["DIFF_PREFIX", "MAX_DELTA_SHARE", "MIN_DELTA_CHARS", "WHOLE_BODY_BYTES",
           "apply_line_delta", "archived_id", "delta_contents", "line_delta", "rebuild_diffs"]

MIN_DELTA_CHARS = 1_000  # shorter results cost little whole, and a diff's header is not free
MAX_DELTA_CHARS = 500_000  # longer ones are not diffed: matching lines costs more than it saves
MAX_DELTA_SHARE = 0.5  # a diff is shown only when it costs at most half the whole result
_HUNK = re.compile(r"@@ -(\d+),(\d+) \+(\d+),(\d+) @@")


def line_delta(base: str, text: str) -> str:
    """The hunks that turn `base` into `text`, or "" when they are equal."""
    old, new = base.split("\n"), text.split("\n")
    hunks: list[str] = []
    matcher = SequenceMatcher(None, old, new)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            continue
        # GNU's convention: an empty range names the line before it.
        hunks.append(f"@@ -{i1 + (i2 > i1)},{i2 - i1} +{j1 + (j2 > j1)},{j2 - j1} @@")
        hunks += ["-" + line for line in old[i1:i2]] + ["+" + line for line in new[j1:j2]]
    return "\n".join(hunks)


def apply_line_delta(base: str, delta: str) -> str:
    """`text` back from `base` and `line_delta(base, text)`, exactly."""
    old = base.split("\n")
    out: list[str] = []
    at = 0  # lines of `old` consumed
    lines = delta.split("\n") if delta else []
    i = 0
    while i < len(lines):
        hunk = _HUNK.fullmatch(lines[i])
        if hunk is None:
            raise ValueError(f"delta: line {i + 1} is not a hunk header: {lines[i][:80]!r}")
        start, removed, _, added = (int(g) for g in hunk.groups())
        first = start - 1 if removed else start
        out += old[at:first]
        out += [line[1:] for line in lines[i + 1 + removed:i + 1 + removed + added]]
        at = first + removed
        i += 1 + removed + added
    return "\n".join(out + old[at:])


DIFF_PREFIX = "[The same as the next "
WHOLE_BODY_BYTES = 64 * 1024  # `memory.window.BODY_REF_BYTES`: larger bodies are never diffed


_ARCHIVED = "; whole in the archive as "


def archived_id(content: str) -> str:
    """The id a diff's header names (the result it stands for, whole in the archive)."""
    return content.split("\n", 1)[0].rsplit(_ARCHIVED, 1)[1][:-1]


def _header(name: str, ident: str, same: bool) -> str:
    if same:
        return f"{DIFF_PREFIX}{name} result shown whole after this one{_ARCHIVED}{ident}]"
    return (f"{DIFF_PREFIX}{name} result shown whole after this one, but for these lines: "
            f"\"-\" lines are that result's, \"+\" lines this one's{_ARCHIVED}{ident}]")


def _tool_name(unit: Sequence[Message], result: Message) -> str | None:
    """The name of the call `result` answers, from its own unit (where assembly pairs it);
    None when that unit's calls with its id disagree on the name."""
    names = {_shown_name(c.name) for m in unit for c in m.tool_calls
             if c.id == result.tool_call_id}
    return names.pop() if len(names) == 1 else None


def _shown_name(name: str) -> str:
    """A tool's name as a header shows it and diffs are grouped by: one line (a name may
    hold a newline), so two names that show alike are one tool to the reader too."""
    return " ".join(name.split()) or "tool"


def _diffable(m: Message) -> bool:
    """Long enough to be worth a diff; not a preview of a large body, nor such a body shown
    whole (a preview hides what differs past its head, and a body's turn is checked by its
    id being quoted, which a diff does not do)."""
    return (MIN_DELTA_CHARS <= len(m.content) <= MAX_DELTA_CHARS
            and "body_ref" not in m.metadata
            and len(m.content.encode()) <= WHOLE_BODY_BYTES)


def delta_contents(units: Sequence[Sequence[Message]], counter: TokenCounter
                   ) -> dict[str, str]:
    """Message id → the content shown for it: the tool results of `units` (oldest first)
    that are cheaper as a diff against a newer whole result of the same tool.

    Newest first: each tool's newest result is shown whole and is the base; an older one is
    a diff against the current base when that costs at most `MAX_DELTA_SHARE` of it whole,
    and otherwise is shown whole and becomes the base for those older still. So a diff's base
    is always the next result of its tool shown whole after it, which is what its header says
    (call ids are not named: a model may reuse them, and renderers rewrite them)."""
    # Tool name → its next result after the one at hand, which is shown whole; None when that
    # one is no base (short, or a large body's preview): the header points at it all the same.
    base: dict[str, Message | None] = {}
    shown: dict[str, str] = {}
    for unit in reversed(units):
        for m in reversed(unit):
            name = _tool_name(unit, m) if m.role == "tool" else None
            if name is None:
                continue
            if not _diffable(m):
                base[name] = None
                continue
            newer = base.get(name)
            if newer is not None and _similar(newer.content, m.content):
                delta = line_delta(newer.content, m.content)
                content = _header(name, m.id, not delta) + ("\n" + delta if delta else "")
                whole = message_cost(counter, m)
                if message_cost(counter, m.model_copy(update={"content": content})) \
                        <= whole * MAX_DELTA_SHARE:
                    shown[m.id] = content
                    continue
            base[name] = m
    return shown


def rebuild_diffs(messages: Sequence[ContextMessage]) -> dict[int, str]:
    """Index in `messages` → the whole result a diff stands for, rebuilt from the next result
    of the same tool shown whole after it (for audits and tests; serving never needs it).
    Tool names are read from the calls as the window pairs them: the latest call with the
    result's id before it."""
    names: dict[str, str] = {}
    name_at: dict[int, str] = {}
    for i, m in enumerate(messages):
        names.update({c.id: _shown_name(c.name) for c in m.tool_calls})
        if m.role == "tool" and m.tool_call_id in names:
            name_at[i] = names[m.tool_call_id]
    out: dict[int, str] = {}
    for i, name in name_at.items():
        if not messages[i].content.startswith(DIFF_PREFIX):
            continue
        base = next(j for j in sorted(name_at) if j > i and name_at[j] == name
                    and not messages[j].content.startswith(DIFF_PREFIX))
        _, _, delta = messages[i].content.partition("\n")
        out[i] = apply_line_delta(messages[base].content, delta)
    return out


def _similar(a: str, b: str) -> bool:
    """Cheap bounds first: two texts whose lengths differ twofold share too little."""
    return min(len(a), len(b)) * 2 >= max(len(a), len(b))
