"""Compaction as pure data: plan what leaves the window, then apply it in one step.

The split matters for atomicity. A plan names the covered ids; the summary is produced
elsewhere (in-process, or by a retryable activity); `apply_compaction` then swaps the window and
returns the ledger record together, so a crash between steps leaves the window as it was.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from datetime import datetime

from pydantic import BaseModel, ConfigDict

from memory.assembly import tool_units
from memory.errors import InvalidInputError
from memory.hierarchy import merge_summaries, written_merge
from memory.models import CompactionRecord, Message, Summary, Trigger, content_hash
from memory.packing import shown_summary_text
from memory.policy import CompactionPolicy, Level
from memory.tokens import MESSAGE_OVERHEAD, TokenCounter, default_counter, message_cost

__all__ = [
    "ENGINE_VERSION",
    "CompactionPlan",
    "WindowState",
    "apply_record",
    "compose_record",
    "merge_pool",
    "no_gain",
    "plan_compaction",
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
    )


# 3: a merged summary names the summaries it merges instead of copying their covers.
# 4: summaries (and the window's size) are metered as a window shows them: long ids by tails.
# 5: extractive quotes are chosen for facts only: greetings, cheers and names in address
#    cover nothing (`memory.facts.fact_terms`), in summaries and in merged ones; an undo
#    puts the summaries it restores where the ones it removes stood, not first.
# 6: a message's size counts its tool calls (ids, names, arguments) and a result's call id,
#    in planning and in the window's size (`memory.tokens.message_cost`); the levels above a
#    summary a model wrote are written by the model too (`merge_text`), not merged extractively.
# 7: in extractive summaries a number weighs as specific only where a person or the model said
#    it, not in tool results (`memory.facts.term_weights`): repeated status lookups no longer
#    fill the summary. Spans without tool results are summarized as in 6.
ENGINE_VERSION = "longthread-engine/7"


def _engine(record: CompactionRecord) -> int:
    """The engine version a record was made by (0 when it does not say)."""
    found = re.fullmatch(r"longthread-engine/(\d+)", record.engine_version or "")
    return int(found[1]) if found else 0


def apply_record(
    state: WindowState,
    record: CompactionRecord,
    *,
    originals: Mapping[str, Message] | None = None,
    order: Mapping[str, int] | None = None,
) -> WindowState:
    """The one function that applies a ledger record to a window: the workflow's activities,
    `memory.Session`, `replay` and `import` all call it, so they can never drift apart.

    A compaction drops its covered messages and the summaries it merged, then adds its merged
    summary (in the place of the first one merged) and its new summary (last). An undo puts its
    covered originals back in append order (`originals` and `order`, by id) and swaps the
    summaries the other way. The record carries every summary text, so nothing is recomputed.
    """
    removed = set(record.removed_summary_ids)
    if record.trigger == "undo":
        by_id = originals or {}
        missing = [i for i in record.covered_ids if i not in by_id]
        if missing:
            raise InvalidInputError("record_id", f"{record.undoes}: {len(missing)} originals "
                                                 "not found")
        seq_of = order or {}
        present = {m.id for m in state.messages}
        restored = [by_id[i] for i in record.covered_ids if i not in present]
        messages = sorted([*state.messages, *restored], key=lambda m: seq_of.get(m.id, 0))
        remaining = [s for s in state.summaries if s.id not in removed]
        # What comes back stands where what it replaced stood (first when nothing is
        # removed: an undone clear's summaries are older than any made since). Before engine
        # 5 it went first, ahead of older summaries; records keep the version they were made by.
        at = next((n for n, s in enumerate(state.summaries) if s.id in removed), 0) \
            if _engine(record) >= 5 else 0
        summaries = [*remaining[:at], *record.restored_summaries, *remaining[at:]]
        return WindowState(summaries=tuple(summaries), messages=tuple(messages))
    covered = set(record.covered_ids)
    kept: list[Summary] = []
    for summary in state.summaries:
        if summary.id not in removed:
            kept.append(summary)
        elif record.merged_summary is not None and record.merged_summary not in kept:
            kept.append(record.merged_summary)
    if record.merged_summary is not None and record.merged_summary not in kept:
        kept.insert(0, record.merged_summary)
    if record.summary is not None:
        kept.append(record.summary)
    return WindowState(summaries=tuple(kept),
                       messages=tuple(m for m in state.messages if m.id not in covered))


def merge_pool(state: WindowState, plan: CompactionPlan, summary: Summary | None
               ) -> list[Summary]:
    """The summaries a plan folds into one a level up, oldest first (the new one among them
    when the plan folds level 1)."""
    pool = [*state.summaries, *([summary] if summary is not None else [])]
    return [s for s in pool if s.id in plan.merge_summary_ids]


def compose_record(
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
    merge_text: tuple[str, str] | None = None,
    focus: str | None = None,
) -> tuple[WindowState, CompactionRecord]:
    """The ledger record of a planned compaction and the window it produces, computed together
    so they commit together. Summaries the plan folds are merged here, once, and the merged
    text goes into the record: `merge_text` (text, strategy) when a summarizer wrote it (see
    `merge_pool`), else the extractive merge's."""
    counter = counter or default_counter()
    covered = set(plan.covered_ids)
    covered_msgs = [m for m in state.messages if m.id in covered]
    if len(covered_msgs) != len(covered):
        raise InvalidInputError("covered_ids", "names messages that are not in the window")
    merged: Summary | None = None
    if plan.merge_summary_ids:
        to_merge = merge_pool(state, plan, summary)
        merged = written_merge(f"{record_id}-merged", to_merge, *merge_text) if merge_text \
            else merge_summaries(f"{record_id}-merged", to_merge, plan.summary_max_tokens,
                                 counter=counter, shown_ids=True)
        merged = merged.model_copy(update={"created_at": at})
    record = CompactionRecord(
        id=record_id, seq=seq, trigger=trigger, level=plan.level, action=plan.action,
        reason=plan.reason, covered_ids=plan.covered_ids, covered_hash=content_hash(covered_msgs),
        removed_summary_ids=plan.merge_summary_ids, summary=summary, merged_summary=merged,
        summary_max_tokens=plan.summary_max_tokens if plan.summarize else None,
        engine_version=ENGINE_VERSION, strategy=strategy, model=model,
        prompt_version=prompt_version, fallback=fallback, tokens_before=plan.tokens_before,
        tokens_after=0, duration_ms=duration_ms, at=at, focus=focus)
    window = apply_record(state, record)
    record = record.model_copy(update={"tokens_after": window_tokens(window, counter)})
    return window, record


def no_gain(record: CompactionRecord) -> str | None:
    """Why a manual record is not worth committing, or None when it makes the window smaller
    (or is automatic). A summary of a few short messages (its lines carry ids and names) can
    cost more than they do. The automatic loop commits such a record and stops (its next round
    covers more messages); skipping it there would summarize again on every append."""
    if record.trigger != "manual" or record.tokens_after < record.tokens_before:
        return None
    return (f"compacting {len(record.covered_ids)} messages would not shrink the window "
            f"({record.tokens_before} → {record.tokens_after} tokens): their summary costs "
            "more than they do")
