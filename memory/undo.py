"""Undo: a new ledger record that puts a compaction's messages back and takes its summary
out, or the reason it cannot yet (its summary was merged by a later record)."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from datetime import datetime

from memory.compaction import ENGINE_VERSION, WindowState, apply_record, window_tokens
from memory.errors import InvalidInputError
from memory.models import CompactionRecord, Message, Summary
from memory.tokens import TokenCounter, default_counter

__all__ = ["compose_undo", "compose_undos", "undo_chain", "undo_refusal", "undo_targets"]


def _undo_first(ledger: Sequence[CompactionRecord], missing: Sequence[str],
                present: set[str]) -> list[str]:
    """The records to undo, newest first, before a record whose summaries `missing` were
    merged away: every record that merged one of them (a record's summary and its merged
    summary may have gone in two different later records), and so on while their own
    summaries were merged too."""
    undone = {r.undoes for r in ledger if r.undoes}
    live = [r for r in ledger if r.id not in undone and r.trigger != "undo"]
    chain: dict[str, CompactionRecord] = {}
    wanted = set(missing)
    while wanted:
        found = [r for r in live if r.id not in chain and wanted & set(r.removed_summary_ids)]
        chain.update((r.id, r) for r in found)
        wanted = {s.id for r in found for s in (r.summary, r.merged_summary)
                  if s is not None and s.id not in present}
    return [r.id for r in sorted(chain.values(), key=lambda r: r.seq, reverse=True)]


def undo_chain(target_id: str, ledger: Sequence[CompactionRecord],
               present: Collection[str]) -> list[str]:
    """The later records to undo before `target_id`, newest first: those that took its
    summary out of the window (a compaction that merged it, or a clear), and so on; empty
    when its summary is in the window (or it has none)."""
    target = next((r for r in ledger if r.id == target_id and r.trigger != "undo"), None)
    if target is None:
        return []
    added = [s.id for s in (target.summary, target.merged_summary) if s is not None]
    missing = [i for i in added if i not in present]
    return _undo_first(ledger, missing, set(present)) if missing else []


def undo_refusal(target_id: str, ledger: Sequence[CompactionRecord],
                 present: Collection[str]) -> str | None:
    """Why an undo of `target_id` would be refused, naming what to undo first; None when it
    can go ahead. `present` is the summary ids in the window now. The audit page asks before
    it offers the undo; `compose_undo` asks before it makes one."""
    target = next((r for r in ledger if r.id == target_id and r.trigger != "undo"), None)
    if target is None:
        undo = next((r for r in ledger if r.id == target_id), None)
        if undo is not None:  # the ledger shows it: "no compaction" would read as a lie
            return (f"{target_id!r} is an undo of {undo.undoes}, not a compaction: an undo "
                    "cannot itself be undone")
        return f"no compaction {target_id!r} in this session"
    if any(r.undoes == target_id for r in ledger):
        return f"{target_id} was already undone"
    added = [s.id for s in (target.summary, target.merged_summary) if s is not None]
    if any(i not in present for i in added):
        first = undo_chain(target_id, ledger, present)
        return (f"{target_id}: its summary was merged by a later compaction; undo "
                f"{' then '.join(first) or 'that'} first, or undo them with it (with_later, "
                "--with-later)")
    return None


def undo_targets(target_id: str, ledger: Sequence[CompactionRecord], state: WindowState,
                 with_later: bool) -> list[str]:
    """What an undo of `target_id` undoes, in order: with `with_later`, the later records
    that took its summary out (newest first), then it."""
    later = undo_chain(target_id, ledger, {s.id for s in state.summaries}) if with_later else []
    return [*later, target_id]


def compose_undos(
    state: WindowState,
    targets: Sequence[str],
    ledger: Sequence[CompactionRecord],
    *,
    seq: int,
    originals: Mapping[str, Message],
    order: Mapping[str, int],
    at: datetime | None = None,
    counter: TokenCounter | None = None,
    actor: str | None = None,
) -> list[tuple[WindowState, CompactionRecord]]:
    """The undos of `targets` (from `undo_targets`), in order: one step per record,
    committed together by the caller, so a session is never left with half of them undone.
    `originals` must hold every covered message of those records."""
    steps: list[tuple[WindowState, CompactionRecord]] = []
    records = list(ledger)
    for n, record_id in enumerate(targets):
        state, record = compose_undo(state, record_id, records, seq=seq + n,
                                     originals=originals, order=order, at=at, counter=counter,
                                     actor=actor)
        steps.append((state, record))
        records.append(record)
    return steps


def compose_undo(
    state: WindowState,
    target_id: str,
    ledger: Sequence[CompactionRecord],
    *,
    seq: int,
    originals: Mapping[str, Message],
    order: Mapping[str, int],
    at: datetime | None = None,
    counter: TokenCounter | None = None,
    actor: str | None = None,
) -> tuple[WindowState, CompactionRecord]:
    """An undo record for compaction `target_id` and the window it produces. The undo carries
    the summaries to put back, so applying it needs no other record; `actor` is who asked for
    the undo (never the target's)."""
    counter = counter or default_counter()
    refusal = undo_refusal(target_id, ledger, {s.id for s in state.summaries})
    if refusal is not None:
        raise InvalidInputError("record_id", refusal)
    target = next(r for r in ledger if r.id == target_id and r.trigger != "undo")
    added = [s for s in (target.summary, target.merged_summary) if s is not None]
    by_id: dict[str, Summary] = {}
    for r in ledger:  # the summaries the target folded, as they stood before it
        for s in (r.summary, r.merged_summary, *r.restored_summaries):
            if s is not None:
                by_id[s.id] = s
    restored = tuple(by_id[i] for i in target.removed_summary_ids if i in by_id)
    record = target.model_copy(update={
        "id": f"u{seq + 1}", "seq": seq, "trigger": "undo", "undoes": target.id,
        "removed_summary_ids": tuple(s.id for s in added), "restored_summaries": restored,
        "summary": None, "merged_summary": None, "engine_version": ENGINE_VERSION,
        "tokens_before": window_tokens(state, counter), "at": at, "duration_ms": 0.0,
        "reason": f"undo of {target.id} requested", "actor": actor, "preserve_recent": None})
    window = apply_record(state, record, originals=originals, order=order)
    return window, record.model_copy(update={"tokens_after": window_tokens(window, counter)})
