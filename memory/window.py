"""The window as the store keeps it, and the two pure rules every reader of it shares.

A window version is summaries + the ids kept from before `base_seq` + every message appended
since (`seq >= base_seq`). Serving a context reads only the newest part of a long tail;
`recent_slice` says exactly which part, so serving (from a partial read) and `replay` (from the
whole rebuilt window) hand assembly the same messages and their digests agree.
"""

from __future__ import annotations

from collections.abc import Sequence
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

__all__ = ["BODY_REF_BYTES", "RECENT_READ_FACTOR", "assemble_from_window", "by_reference",
           "compose_removal", "recent_slice", "slice_start"]

BODY_REF_BYTES = 64 * 1024  # larger bodies stand in the window as a preview and a reference
RECENT_READ_FACTOR = 2  # a context of B tokens looks at the newest 2·B tokens of the window


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


def assemble_from_window(state: WindowState, *, max_tokens: int,
                         retrieved: Sequence[ScoredMessage] = (), shares: Shares | None = None,
                         query: str | None = None, version: int = ASSEMBLY_VERSION,
                         counter: TokenCounter | None = None) -> ContextWindow:
    """The context for one call from a window version: what serving and replay both run.
    `shares=None` lets assembly adapt them to the query and to what retrieval found; version 1
    (before issue 12) had fixed shares, which it still rebuilds exactly."""
    if version == 1 and shares is None:
        shares = QUERY_SHARES if query and query.strip() else DEFAULT_SHARES
    return assemble_context(
        max_tokens=max_tokens, system=[m for m in state.messages if m.role == "system"],
        summaries=state.summaries, recent=recent_slice(state.messages, max_tokens, counter),
        retrieved=retrieved, shares=shares, query=query, version=version, counter=counter)


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
