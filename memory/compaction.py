"""Compaction as pure data: plan what leaves the window, then apply it in one step.

The split matters for atomicity. A plan names the covered ids; the summary is produced
elsewhere (in-process, or by a retryable activity); `apply_compaction` then swaps the window and
returns the ledger record together, so a crash between steps leaves the window as it was.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime

from memory.errors import InvalidInputError
from memory.hierarchy import merge_summaries, written_merge
from memory.models import CompactionRecord, Message, Summary, Trigger, content_hash
from memory.planning import MIN_SUMMARY_TOKENS as MIN_SUMMARY_TOKENS
from memory.planning import SUMMARY_OVERHEAD as SUMMARY_OVERHEAD
from memory.planning import CompactionPlan, WindowState, plan_compaction, window_tokens
from memory.tokens import TokenCounter, default_counter

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
# 8: an extractive summary's lines from dated messages stand under a `## 2023-05-08` line for
#    their day (UTC), one per run of lines, in summaries and in merged ones
#    (`memory.extractive`). Undated spans are summarized as in 7.
# 9: the assistant's latest turn's units are not compacted while a call of theirs awaits its
#    result, within a quarter of the window (`memory.units.awaiting_units`); an assistant message
#    marked `memory.units.JOINS_NEXT` (an Agents SDK reasoning item) leaves the window only
#    with the assistant message after it, in compaction and pop. Records and their
#    application are as in 8.
# 10: extractive summaries do not end a sentence at a title ("Dr. Okonkwo") or at "No."
#    before a number (`memory.text.sentences`); texts without them are summarized as in 9.
# 11: the user's message that opened the running turn is not compacted while the turn runs
#    (`memory.units.turn_start`), within an eighth of the window: an autonomous agent's task.
# 12: tokens are counted by script (`memory.tokens.ScriptCounter`), so a window of Japanese
#    or Hindi compacts at its real size, not a quarter of it; ASCII counts as in 11.
# 13: (see `memory.facts`) a number said only in boilerplate is a slot of its form.
# 14: a tool's sentence whose form recurs is boilerplate however short (`memory.facts.
#     boilerplate`), in leaf summaries and in merges, which know a summary's tool lines by their
#     speaker: a level-2 merge quoted 28 `"ts": …` lines of tracking lookups over the refund its
#     level-1 summary held; and a sentence is not quoted by a clause of numbers and dates alone
#     ("October 30").
ENGINE_VERSION = "longthread-engine/14"


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
    actor: str | None = None,
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
        tokens_after=0, duration_ms=duration_ms, at=at, focus=focus,
        preserve_recent=plan.preserve_recent, actor=actor)
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
