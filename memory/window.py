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
    assembly_counter,
    tool_units,
)
from memory.compaction import ENGINE_VERSION, WindowState, apply_record, window_tokens
from memory.models import CompactionRecord, ContextWindow, Message, ScoredMessage, content_hash
from memory.thinking import turn_thinking
from memory.tokens import TokenCounter, default_counter, message_cost

__all__ = ["BODY_REF_BYTES", "RECENT_READ_FACTOR", "WHOLE_BODIES_MAX_BYTES", "WHOLE_BODY_SHARE",
           "WholeBodies", "asked_before", "assemble_from_window", "by_reference", "compose_removal",
           "recent_slice", "slice_start", "whole_bodies"]

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
# Bodies read and then found too large for what is left, before the choice stops: a window of
# many similar previews costs a few reads, not one each, and a too-dense newer body still does
# not keep an older one out.
_PASSED_OVER_AFTER_READING = 2


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
                counter: TokenCounter | None = None, tools: bool = True) -> int:
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
        used += message_cost(counter, messages[start], tools)
    calls = {c.id: i for i, m in enumerate(messages) for c in m.tool_calls}
    while True:  # a tool result inside pulls its call in, which may hold earlier results
        earliest = min([start, *(calls.get(m.tool_call_id or "", start)
                                 for m in messages[start:] if m.role == "tool")])
        if earliest == start:
            return start
        start = earliest


def recent_slice(messages: Sequence[Message], max_tokens: int,
                 counter: TokenCounter | None = None, tools: bool = True,
                 asked: bool = False) -> list[Message]:
    """The newest non-system messages a `max_tokens` context may draw its recent section from
    (`tools=False`: counted as before assembly version 11, for replay). With `asked` (assembly
    version 16), a slice that holds no user message starts with the user's newest one before
    it (`asked_before`): an autonomous agent's task, hundreds of steps back."""
    rest = [m for m in messages if m.role != "system"]
    start = slice_start(rest, max_tokens, counter, tools)
    at = asked_before(rest, start) if asked else None
    return rest[start:] if at is None else [rest[at], *rest[start:]]


def asked_before(messages: Sequence[Message], start: int) -> int | None:
    """The index of the newest user message before `start` when none is at or after it, else
    None. Serving reads the window's tail newest first, so it finds this as the first user
    message it reads before the slice (`memory.store.windows`)."""
    if any(m.role == "user" for m in messages[start:]):
        return None
    return next((i for i in range(start - 1, -1, -1) if messages[i].role == "user"), None)


class WholeBodies:
    """Which previews one context shows whole (version 9): newest first, while together the
    bodies cost at most `room` tokens and WHOLE_BODIES_MAX_BYTES; one that does not fit in
    what is left is passed over (an older one may still be taken), until two have been.

    Serving reads each body it asks for (`wanted`, then `offer`), one at a time, and only
    bodies that could still fit by their stored size, so a window of many previews costs the
    bodies shown and at most two more; replay offers them from the archive. Both ask in the
    same order and decide from the same bodies, so they choose the same."""

    def __init__(self, recent: Sequence[Message], room: int, counter: TokenCounter,
                 tools: bool = True) -> None:
        self._queue = [m for m in reversed(recent) if isinstance(m.metadata.get("body_ref"), int)]
        self._room = room
        self._counter = counter
        self._tools = tools
        self._tokens = self._bytes = self._passed_over = 0
        self.chosen: dict[str, Message] = {}

    def wanted(self) -> str | None:
        """The next preview whose body decides, or None when the choice is made."""
        while self._queue and self._passed_over < _PASSED_OVER_AFTER_READING:
            size = int(self._queue[0].metadata["body_ref"])  # type: ignore[arg-type]
            if self._bytes + size <= WHOLE_BODIES_MAX_BYTES \
                    and self._tokens + size // _MAX_BYTES_PER_TOKEN <= self._room:
                return self._queue[0].id
            self._queue.pop(0)  # cannot fit, whatever its tokens: not read
        return None

    def offer(self, body: Message | None) -> None:
        """The body `wanted` named (None if it could not be read): taken if it is the one the
        preview stands for and fits in what is left."""
        preview = self._queue.pop(0)
        if body is None or by_reference(body) != preview:
            return
        cost = message_cost(self._counter, body, self._tools)
        if self._tokens + cost > self._room:
            self._passed_over += 1
            return
        self.chosen[preview.id] = body
        self._tokens += cost
        self._bytes += int(preview.metadata["body_ref"])  # type: ignore[arg-type]


def _whole_body_room(state: WindowState, recent: Sequence[Message], max_tokens: int,
                     counter: TokenCounter, version: int) -> int:
    """Half the budget after system messages: what all bodies one window shows whole share;
    from version 15, less what the running turn's thinking costs. Serving's choice of bodies
    to read and assembly's both come from here: a smaller room on one side let assembly ask
    for a body serving never read, and replay, which has them all, showed it whole."""
    system = sum(counter.count_message(m.role, m.content)
                 for m in state.messages if m.role == "system")
    room = int((max_tokens - system) * WHOLE_BODY_SHARE)
    if version >= 15:  # a body shown whole does not take the running turn's thinking's room
        steps = tool_units([m for m in recent if m.role != "system"], once=True, per_call=True)
        room -= sum(cost for _, cost in turn_thinking(steps, counter).values())
    return max(room, 0)


def whole_bodies(state: WindowState, max_tokens: int,
                 counter: TokenCounter | None = None) -> WholeBodies:
    """The chooser for a `max_tokens` context over `state`: its recent slice's previews and
    half the budget after system messages. Serving calls this on every context, so the
    usual window, without previews, costs one scan and nothing more."""
    counter = counter or assembly_counter(ASSEMBLY_VERSION)
    if not any("body_ref" in m.metadata for m in state.messages):
        return WholeBodies((), 0, counter)
    recent = recent_slice(state.messages, max_tokens, counter, asked=True)
    return WholeBodies(recent, _whole_body_room(state, recent, max_tokens, counter,
                                                ASSEMBLY_VERSION), counter)


def assemble_from_window(state: WindowState, *, max_tokens: int,
                         retrieved: Sequence[ScoredMessage] = (), shares: Shares | None = None,
                         query: str | None = None, version: int = ASSEMBLY_VERSION,
                         counter: TokenCounter | None = None,
                         bodies: Mapping[str, Message] | None = None) -> ContextWindow:
    """The context for one call from a window version: what serving and replay both run.
    `shares=None` lets assembly adapt them to the query and to what retrieval found; version 1
    (before issue 12) had fixed shares, which it still rebuilds exactly. `bodies` are the
    originals of previews by id (at least those `whole_bodies` asks for); from version 9 on,
    those it chooses are shown whole, and other versions ignore them."""
    if version == 1 and shares is None:
        shares = QUERY_SHARES if query and query.strip() else DEFAULT_SHARES
    counter = counter or assembly_counter(version)
    tools = version >= 11
    recent = recent_slice(state.messages, max_tokens, counter, tools, asked=version >= 16)

    def assemble(shown: list[Message]) -> ContextWindow:
        return assemble_context(
            max_tokens=max_tokens, system=[m for m in state.messages if m.role == "system"],
            summaries=state.summaries, recent=shown, retrieved=retrieved, shares=shares,
            query=query, version=version, counter=counter)

    wholes: dict[str, Message] = {}
    if version >= 9 and bodies:
        chooser = WholeBodies(recent, _whole_body_room(state, recent, max_tokens, counter,
                                                       version), counter, tools)
        while (wanted := chooser.wanted()) is not None:
            chooser.offer(bodies.get(wanted))
        wholes = chooser.chosen
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
                    counter: TokenCounter | None = None, actor: str | None = None
                    ) -> tuple[WindowState, CompactionRecord] | None:
    """A ledger record that takes the newest message (`pop`) or everything (`clear`) out of
    the window, for agent frameworks whose sessions can pop and clear. The originals stay in
    the archive and the record can be undone like any compaction. None if there is nothing."""
    counter = counter or default_counter()
    if kind == "pop":
        units = tool_units([m for m in state.messages if m.role != "system"], joins=True)
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
        engine_version=ENGINE_VERSION, tokens_before=before, tokens_after=0, actor=actor)
    window = apply_record(state, record)
    return window, record.model_copy(update={"tokens_after": window_tokens(window, counter)})
