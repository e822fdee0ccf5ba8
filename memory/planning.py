"""Planning a compaction: the window as it stands, what it costs, and what should leave it.

Apart from `memory.compaction` (which re-exports every name here) so each file is one step:
this one decides what a compaction covers, that one turns a plan into a ledger record and
applies records to a window.
"""

from __future__ import annotations

import re
from collections.abc import Collection

from pydantic import BaseModel, ConfigDict

from memory.errors import InvalidInputError
from memory.models import Message, Summary
from memory.packing import shown_summary_text
from memory.policy import CompactionPolicy, Level
from memory.tokens import MESSAGE_OVERHEAD, TokenCounter, default_counter, message_cost
from memory.units import awaiting_units, tool_units, turn_over, turn_start

__all__ = ["MIN_SUMMARY_TOKENS", "SUMMARY_OVERHEAD", "CompactionPlan", "WindowState",
           "plan_compaction", "window_tokens"]


class WindowState(BaseModel):
    """What stands in the working window: summaries (oldest first) and verbatim messages."""

    model_config = ConfigDict(frozen=True)

    summaries: tuple[Summary, ...] = ()
    messages: tuple[Message, ...] = ()


class CompactionPlan(BaseModel):
    model_config = ConfigDict(frozen=True)

    level: Level
    action: str
    reason: str
    covered_ids: tuple[str, ...]
    summarize: bool
    summary_max_tokens: int
    merge_summary_ids: tuple[str, ...] = ()
    tokens_before: int
    preserve_recent: int | None = None  # the newest messages it kept verbatim


MIN_SUMMARY_TOKENS = 32
SUMMARY_OVERHEAD = 24  # the header assembly wraps a summary in


def window_tokens(state: WindowState, counter: TokenCounter | None = None) -> int:
    """The window's size for the policy: messages as they are, summaries as a window shows
    them (engine version 4; long ids by their tails), the form their budget is metered in."""
    counter = counter or default_counter()
    return sum(message_cost(counter, m) for m in state.messages) + sum(
        counter.count_message("system", shown_summary_text(s)) + SUMMARY_OVERHEAD
        for s in state.summaries
    )


def _normalized(text: str) -> str:
    return re.sub(r"\W+", " ", text.lower()).strip()


def plan_compaction(
    state: WindowState,
    policy: CompactionPolicy,
    *,
    force: bool = False,
    preserve_recent: int | None = None,
    keep_ids: Collection[str] = (),
    chunked: bool = True,
    catch_up: bool = False,
    counter: TokenCounter | None = None,
) -> CompactionPlan | None:
    """Decide what to compact; None when the policy says the window is fine as it is.

    `keep_ids` are never covered (the workflow passes messages not yet archived), and neither
    is anything in the same tool unit as one of them. Automatic compactions take one chunk
    (`chunked`); with `catch_up` the chunk grows to whatever brings the window back to target.
    """
    counter = counter or default_counter()
    tokens = window_tokens(state, counter)
    decision = policy.decide(tokens)
    level: Level = decision.level
    reason = decision.reason
    if level == "none":
        if not force:
            return None
        level, reason = "medium", f"manual compaction requested; {decision.reason}"
    keep = policy.preserve_recent if preserve_recent is None else preserve_recent
    if keep < 0:
        raise InvalidInputError("preserve_recent", "must be >= 0")
    # Every level keeps the newest `keep` verbatim, emergency too: it used to keep 2, and
    # summarized an agent's own question away while the window's size was one large tool
    # result it could not touch, which left the window bigger than before.

    # Cut on unit boundaries so a tool call and its results stay together, and keep the newest
    # `keep` messages, system messages and pinned messages verbatim.
    units = tool_units([m for m in state.messages if m.role != "system"], joins=True)
    kept_tail = 0
    cut = len(units)
    while cut > 0 and kept_tail < keep:
        cut -= 1
        kept_tail += len(units[cut])
    frozen = set(keep_ids)
    # The assistant's latest calls still waiting for their results stay too (engine version
    # 9), within a quarter of the context window: archived, a call left its result to
    # arrive alone in the window, where no provider accepts it.
    waiting = awaiting_units(units, lambda m: message_cost(counter, m),
                             policy.context_window // 4)
    # And the user's message that opened the running turn (engine version 11), within an
    # eighth of the window: an autonomous agent's task is its one user message, and a light
    # compaction archived it, unsummarized, while the agent worked on (a user test: the task
    # was in 1% of 300 steps' requests).
    opened = turn_start(units)
    if opened is not None and opened < len(units) - 1 and not turn_over(units) and sum(
            message_cost(counter, m) for m in units[opened]) <= policy.context_window // 8:
        waiting.add(opened)
    movable = [unit for n, unit in enumerate(units[:cut])
               if not any(m.id in frozen for m in unit) and n not in waiting]
    older = [m for unit in movable for m in unit if not m.pinned]
    if not older:
        return None

    counts = {m.id: message_cost(counter, m) for m in older}
    least = 4 * (MIN_SUMMARY_TOKENS + SUMMARY_OVERHEAD)  # tokens a summary is worth making for
    if level == "light":
        # Exact duplicates (after normalising) go first, then the oldest, down to the target.
        seen: set[str] = set()
        covered: list[str] = []
        for m in older:
            key = _normalized(m.content)
            if key in seen and not m.tool_calls and m.role != "tool":
                covered.append(m.id)
            seen.add(key)
        excess = tokens - decision.target_tokens - sum(counts[i] for i in covered)
        # What leaves the window beyond exact duplicates is folded into a summary, so the
        # ordinary one-message-per-append loop (which only ever reaches this level) still
        # carries the older conversation in every window. A span too small to pay for a
        # summary's minimum cost (`least`) would be archived as it is: so the oldest units
        # are taken until the span pays for one, a little past the target. Without that, a
        # small context window (each round frees a few hundred tokens) got no summary at
        # all: with a 1,200-token window, 69 of 81 records were archive-only.
        fresh_tokens = 0
        for unit in movable:
            if excess <= 0 and fresh_tokens >= least:
                break
            ids = [m.id for m in unit if not m.pinned and m.id not in covered]
            covered.extend(ids)
            excess -= sum(counts.get(i, 0) for i in ids)
            fresh_tokens += sum(counts.get(i, 0) for i in ids)
        order = {m.id: n for n, m in enumerate(state.messages)}
        covered_ids = tuple(sorted(covered, key=order.__getitem__))
        summarize = fresh_tokens >= least
        if not summarize:  # the ledger says why no summary, not only why it compacted
            reason += (f"; no summary: {fresh_tokens} tokens could leave the window, fewer "
                       f"than the {least} a summary is worth making for")
    elif force or not chunked:
        covered_ids = tuple(m.id for m in older)  # everything older, in one record
        summarize = True
    else:
        # Automatic compactions take the oldest chunk only, so each summary stays small and
        # specific and each ledger record can be undone on its own; the caller repeats while
        # the policy still asks for it.
        chunk = int(policy.context_window * policy.chunk_fraction)
        if catch_up:  # far over the target (a burst of appends): one record takes the excess,
            chunk = max(chunk, tokens - decision.target_tokens)  # not dozens of round trips
        taken: list[str] = []
        taken_tokens = 0
        for m in older:
            if taken and taken_tokens >= chunk:
                break
            taken.append(m.id)
            taken_tokens += counts[m.id]
        taken_set = set(taken)
        whole = {m.id for unit in movable for m in unit if any(x.id in taken_set for x in unit)}
        covered_ids = tuple(m.id for m in older if m.id in whole)
        summarize = True
    covered_tokens = sum(counts[i] for i in covered_ids)
    if summarize and not force and level != "light" and covered_tokens < least:
        # A few short messages (an agent's question, its answer) beside a large preserved tail:
        # a summary would cost the window more than they do, and archiving them would take the
        # task out of the window with nothing standing for it. They wait, verbatim, for a
        # round with enough to summarize.
        return None
    summary_max = max(MIN_SUMMARY_TOKENS, min(int(policy.context_window * policy.summary_fraction),
                                              covered_tokens // 4))
    if level == "emergency":
        summary_max = max(MIN_SUMMARY_TOKENS, summary_max // 2)
    # A summary never costs the window more than the span it replaces (a short span gets a
    # shorter summary), or a compaction could make the window larger.
    room = covered_tokens - SUMMARY_OVERHEAD - MESSAGE_OVERHEAD - 1
    if room > 0:
        summary_max = min(summary_max, room)
    merge: tuple[str, ...] = ()
    if summarize:  # keep the tree logarithmic: fold the oldest `fanout` of a crowded level
        for lvl in sorted({s.level for s in state.summaries}):
            same = [s for s in state.summaries if s.level == lvl]
            if len(same) + (1 if lvl == 1 else 0) > policy.hierarchy_fanout:
                merge = tuple(s.id for s in same[: policy.hierarchy_fanout])
                break
    return CompactionPlan(
        level=level, action=decision.action if decision.level != "none" else "rolling_summary",
        reason=reason, covered_ids=covered_ids, summarize=summarize,
        summary_max_tokens=summary_max, merge_summary_ids=merge, tokens_before=tokens,
        preserve_recent=keep,
    )
