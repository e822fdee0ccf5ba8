"""The window as the store keeps it, and the two pure rules every reader of it shares.

A window version is summaries + the ids kept from before `base_seq` + every message appended
since (`seq >= base_seq`). Serving a context reads only the newest part of a long tail;
`recent_slice` says exactly which part, so serving (from a partial read) and `replay` (from the
whole rebuilt window) hand assembly the same messages and their digests agree.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Literal

from memory.assembly import (
    ASSEMBLY_VERSION,
    DEFAULT_SHARES,
    QUERY_SHARES,
    Shares,
    assemble_context,
    tool_units,
)
from memory.compaction import ENGINE_VERSION, WindowState, apply_record, window_tokens
from memory.models import CompactionRecord, ContextWindow, Message, ScoredMessage, content_hash
from memory.tokens import TokenCounter, default_counter

__all__ = ["BODY_REF_BYTES", "RECENT_READ_FACTOR", "WHOLE_BODIES_MAX_BYTES", "WHOLE_BODY_SHARE",
           "assemble_from_window", "by_reference", "compose_removal", "recent_slice",
           "slice_start", "whole_bodies"]

BODY_REF_BYTES = 64 * 1024  # larger bodies stand in the window as a preview and a reference
RECENT_READ_FACTOR = 2  # a context of B tokens looks at the newest 2·B tokens of the window
WHOLE_BODY_SHARE = 0.5  # of the budget after system messages: all bodies one window shows whole
# and at most this many bytes of them: `generate()` carries the window through Temporal, whose
# payloads are capped at 2 MB
WHOLE_BODIES_MAX_BYTES = 1_000_000
# The heuristic counter (what serving and replay count with) never gives a token more than 16
# bytes (4 characters of at most 4 bytes), so bodies over 16 bytes a token of the room cannot
# fit and are not even read. With a denser counter (tiktoken counts a long run of spaces as one
# token) a body that would fit may go unread, the same way on both paths.
_MAX_BYTES_PER_TOKEN = 16


def by_reference(message: Message) -> Message:
    """The window's stand-in for a large body that lives in full in the archive."""
    size = len(message.content.encode())
    if size <= BODY_REF_BYTES:
        return message
    preview = message.content[:2000]
    return message.model_copy(update={
        "content": f"{preview}\n[… {size} bytes in full in the archive as {message.id}]",
        "metadata": {**message.metadata, "body_ref": size}})


def slice_start(messages: Sequence[Message], max_tokens: int,
                counter: TokenCounter | None = None) -> int:
    """Index where the recent candidates of a `max_tokens` context begin (non-system messages).

    Newest first until more than RECENT_READ_FACTOR·max_tokens are covered (the recent section
    can never use more than max_tokens), then back to the call of any tool result inside, so a
    tool unit is never cut.
    """
    counter = counter or default_counter()
    bound = RECENT_READ_FACTOR * max_tokens
    start, used = len(messages), 0
    while start > 0 and used <= bound:
        start -= 1
        used += counter.count_message(messages[start].role, messages[start].content)
    calls = {c.id: i for i, m in enumerate(messages) for c in m.tool_calls}
    while True:  # a tool result inside pulls its call in, which may hold earlier results
        earliest = min([start, *(calls.get(m.tool_call_id or "", start)
                                 for m in messages[start:] if m.role == "tool")])
        if earliest == start:
            return start
        start = earliest


def recent_slice(messages: Sequence[Message], max_tokens: int,
                 counter: TokenCounter | None = None) -> list[Message]:
    """The newest non-system messages a `max_tokens` context may draw its recent section from."""
    rest = [m for m in messages if m.role != "system"]
    return rest[slice_start(rest, max_tokens, counter):]


def _whole_body_room(state: WindowState, max_tokens: int, counter: TokenCounter) -> int:
    system = sum(counter.count_message(m.role, m.content)
                 for m in state.messages if m.role == "system")
    return int((max_tokens - system) * WHOLE_BODY_SHARE)


def _readable(recent: Sequence[Message], room: int) -> list[str]:
    """Newest first, the previews whose bodies together could fit `room` tokens (by their stored
    size) and WHOLE_BODIES_MAX_BYTES; a body too large for what is left is passed over."""
    limit = min(room * _MAX_BYTES_PER_TOKEN, WHOLE_BODIES_MAX_BYTES)
    out: list[str] = []
    total = 0
    for m in reversed(recent):
        size = m.metadata.get("body_ref")
        if isinstance(size, int) and total + size <= limit:
            out.append(m.id)
            total += size
    return out


def whole_bodies(state: WindowState, max_tokens: int,
                 counter: TokenCounter | None = None) -> list[str]:
    """Ids of the previews (bodies over BODY_REF_BYTES) a `max_tokens` context may show whole:
    in its recent slice, and small enough by their stored size to fit. Serving reads just
    these bodies and replay passes them from the archive; the final choice (by the body's
    tokens) is made in `assemble_from_window`, on the same ids for both."""
    if not any("body_ref" in m.metadata for m in state.messages):
        return []  # the usual window: nothing to slice for
    counter = counter or default_counter()
    return _readable(recent_slice(state.messages, max_tokens, counter),
                     _whole_body_room(state, max_tokens, counter))


def _wholes(recent: list[Message], bodies: Mapping[str, Message], room: int,
            counter: TokenCounter) -> dict[str, Message]:
    """Newest first, the bodies of `recent`'s previews that `whole_bodies` names, are given,
    are the ones the previews stand for, and together cost at most `room` tokens."""
    readable = set(_readable(recent, room))
    chosen: dict[str, Message] = {}
    used = 0
    for m in reversed(recent):
        body = bodies.get(m.id) if m.id in readable else None
        if body is None or by_reference(body) != m:
            continue
        cost = counter.count_message(body.role, body.content)
        if used + cost <= room:
            chosen[m.id] = body
            used += cost
    return chosen


def assemble_from_window(state: WindowState, *, max_tokens: int,
                         retrieved: Sequence[ScoredMessage] = (), shares: Shares | None = None,
                         query: str | None = None, version: int = ASSEMBLY_VERSION,
                         counter: TokenCounter | None = None,
                         bodies: Mapping[str, Message] | None = None) -> ContextWindow:
    """The context for one call from a window version: what serving and replay both run.
    `shares=None` lets assembly adapt them to the query and to what retrieval found; version 1
    (before issue 12) had fixed shares, which it still rebuilds exactly. `bodies` are the
    originals of (some of) the previews `whole_bodies` names; from version 9 on, those that
    fit are shown whole, and other versions ignore them."""
    if version == 1 and shares is None:
        shares = QUERY_SHARES if query and query.strip() else DEFAULT_SHARES
    counter = counter or default_counter()
    recent = recent_slice(state.messages, max_tokens, counter)

    def assemble(shown: list[Message]) -> ContextWindow:
        return assemble_context(
            max_tokens=max_tokens, system=[m for m in state.messages if m.role == "system"],
            summaries=state.summaries, recent=shown, retrieved=retrieved, shares=shares,
            query=query, version=version, counter=counter)

    wholes = _wholes(recent, bodies or {}, _whole_body_room(state, max_tokens, counter),
                     counter) if version >= 9 else {}
    # Version 9 shows previews' bodies whole, newest first, while together they cost at most
    # half the budget and 1 MB. Why: the 64 KB threshold keeps a window version small in the
    # store, not the model's view small; a tool result an agent just asked for should reach
    # the model whole when there is room. A body whose turn the window then leaves out goes
    # back to its preview (as before 9), and the window is assembled again: a body never
    # pushes its own turn out.
    while wholes:
        window = assemble([wholes.get(m.id, m) for m in recent])
        shown = {i for m in window.messages if m.section == "recent" for i in m.source_ids}
        if wholes.keys() <= shown:
            return window
        wholes = {i: body for i, body in wholes.items() if i in shown}
    return assemble(recent)


def compose_removal(state: WindowState, kind: Literal["pop", "clear"], *, seq: int,
                    at: datetime | None = None,
                    counter: TokenCounter | None = None
                    ) -> tuple[WindowState, CompactionRecord] | None:
    """A ledger record that takes the newest message (`pop`) or everything (`clear`) out of
    the window, for agent frameworks whose sessions can pop and clear. The originals stay in
    the archive and the record can be undone like any compaction. None if there is nothing."""
    counter = counter or default_counter()
    if kind == "pop":
        units = tool_units([m for m in state.messages if m.role != "system"])
        covered = tuple(m.id for m in units[-1]) if units else ()
        summaries: tuple[str, ...] = ()
    else:
        covered = tuple(m.id for m in state.messages)
        summaries = tuple(s.id for s in state.summaries)
    if not covered and not summaries:
        return None
    chosen = set(covered)
    before = window_tokens(state, counter)
    record = CompactionRecord(
        id=f"{'p' if kind == 'pop' else 'x'}{seq + 1}", seq=seq, at=at,
        trigger="pop" if kind == "pop" else "clear", level="none",
        action="pop_newest" if kind == "pop" else "clear_window",
        reason=f"{kind} requested", covered_ids=covered,
        covered_hash=content_hash([m for m in state.messages if m.id in chosen]),
        removed_summary_ids=summaries, strategy="archive-only",
        engine_version=ENGINE_VERSION, tokens_before=before, tokens_after=0)
    window = apply_record(state, record)
    return window, record.model_copy(update={"tokens_after": window_tokens(window, counter)})
