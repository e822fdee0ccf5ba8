"""Compaction as pure data: plan what leaves the window, then apply it in one step.

The split matters for atomicity. A plan names the covered ids; the summary is produced
elsewhere (in-process, or by a retryable activity); `apply_compaction` then swaps the window and
returns the ledger record together, so a crash between steps leaves the window as it was.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence
from datetime import datetime

from pydantic import BaseModel, ConfigDict

from memory.assembly import tool_units
from memory.errors import InvalidInputError
from memory.hierarchy import merge_summaries
from memory.models import CompactionRecord, Message, Summary, Trigger, content_hash
from memory.policy import CompactionPolicy, Level
from memory.tokens import TokenCounter, default_counter

__all__ = [
    "CompactionPlan",
    "WindowState",
    "apply_compaction",
    "plan_compaction",
    "undo_compaction",
    "window_tokens",
]


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


def window_tokens(state: WindowState, counter: TokenCounter | None = None) -> int:
    counter = counter or default_counter()
    return sum(counter.count_message(m.role, m.content) for m in state.messages) + sum(
        counter.count_message("system", s.content) + 24 for s in state.summaries
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
    if level == "emergency":
        keep = min(keep, 2)

    # Cut on unit boundaries so a tool call and its results stay together, and keep the newest
    # `keep` messages, system messages and pinned messages verbatim.
    units = tool_units([m for m in state.messages if m.role != "system"])
    kept_tail = 0
    cut = len(units)
    while cut > 0 and kept_tail < keep:
        cut -= 1
        kept_tail += len(units[cut])
    frozen = set(keep_ids)
    movable = [unit for unit in units[:cut] if not any(m.id in frozen for m in unit)]
    older = [m for unit in movable for m in unit if not m.pinned]
    if not older:
        return None

    counts = {m.id: counter.count_message(m.role, m.content) for m in older}
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
        for unit in movable:
            if excess <= 0:
                break
            ids = [m.id for m in unit if not m.pinned and m.id not in covered]
            covered.extend(ids)
            excess -= sum(counts.get(i, 0) for i in ids)
        order = {m.id: n for n, m in enumerate(state.messages)}
        covered_ids = tuple(sorted(covered, key=order.__getitem__))
        summarize = False
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
        for m in older:
            if taken and sum(counts[i] for i in taken) >= chunk:
                break
            taken.append(m.id)
        whole = {m.id for unit in movable for m in unit if any(x.id in taken for x in unit)}
        covered_ids = tuple(m.id for m in older if m.id in whole)
        summarize = True
    covered_tokens = sum(counts[i] for i in covered_ids)
    summary_max = max(32, min(int(policy.context_window * policy.summary_fraction),
                              covered_tokens // 4))
    if level == "emergency":
        summary_max = max(32, summary_max // 2)
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
    )


def apply_compaction(
    state: WindowState,
    plan: CompactionPlan,
    *,
    record_id: str,
    seq: int,
    summary: Summary | None,
    strategy: str,
    trigger: Trigger = "auto",
    model: str | None = None,
    prompt_version: str | None = None,
    fallback: str | None = None,
    duration_ms: float = 0.0,
    at: datetime | None = None,
    counter: TokenCounter | None = None,
) -> tuple[WindowState, CompactionRecord]:
    """The new window and its ledger record, computed together so they commit together."""
    counter = counter or default_counter()
    covered = set(plan.covered_ids)
    covered_msgs = [m for m in state.messages if m.id in covered]
    if len(covered_msgs) != len(covered):
        raise InvalidInputError("covered_ids", "names messages that are not in the window")
    summaries = list(state.summaries)
    removed: tuple[str, ...] = ()
    if summary is not None:
        summaries.append(summary)
    if plan.merge_summary_ids:
        to_merge = [s for s in summaries if s.id in plan.merge_summary_ids]
        merged = merge_summaries(f"{record_id}-merged", to_merge, plan.summary_max_tokens,
                                 counter=counter)
        summaries = [merged, *[s for s in summaries if s.id not in plan.merge_summary_ids]]
        removed = plan.merge_summary_ids
    new_state = WindowState(
        summaries=tuple(summaries),
        messages=tuple(m for m in state.messages if m.id not in covered),
    )
    record = CompactionRecord(
        id=record_id, seq=seq, trigger=trigger,
        level=plan.level, action=plan.action, reason=plan.reason,
        covered_ids=plan.covered_ids, covered_hash=content_hash(covered_msgs),
        removed_summary_ids=removed, summary=summary, strategy=strategy, model=model,
        prompt_version=prompt_version, fallback=fallback, tokens_before=plan.tokens_before,
        tokens_after=window_tokens(new_state, counter), duration_ms=duration_ms, at=at,
    )
    return new_state, record


def undo_compaction(
    state: WindowState,
    record: CompactionRecord,
    originals: Sequence[Message],
    order: dict[str, int],
) -> WindowState:
    """Put a compaction's originals back and drop its summary; `order` is append order."""
    if record.summary is not None and record.summary.id not in {s.id for s in state.summaries}:
        raise InvalidInputError(
            "record_id",
            f"{record.id}: its summary was merged by a later compaction; undo that first",
        )
    by_id = {m.id: m for m in originals}
    missing = [i for i in record.covered_ids if i not in by_id]
    if missing:
        raise InvalidInputError("record_id", f"{record.id}: {len(missing)} originals not found")
    present = {m.id for m in state.messages}
    restored = [by_id[i] for i in record.covered_ids if i not in present]
    messages = sorted([*state.messages, *restored], key=lambda m: order.get(m.id, 0))
    summaries = tuple(s for s in state.summaries
                      if record.summary is None or s.id != record.summary.id)
    return WindowState(summaries=summaries, messages=tuple(messages))
