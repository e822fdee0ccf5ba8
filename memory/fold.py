"""Folding a session's ledger over its messages: the window any point of its history had.

`replay`, `verify`, `why` and `import`'s check all rebuild windows this way, through
`apply_record`, the one function every path applies a record with. Pure: the callers read the
archive.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Sequence

from memory.compaction import WindowState, apply_record
from memory.models import CompactionRecord, Message
from memory.window import by_reference

__all__ = ["Archived", "LedgerFold", "fold_ledger"]


def fold_ledger(messages: Sequence[Message], records: Sequence[CompactionRecord],
                before: Callable[[WindowState, CompactionRecord], None] | None = None
                ) -> WindowState:
    """The window that `records`, applied in order by `apply_record`, make of `messages` (the
    session's first turns, in append order, as a window shows them). `before` sees each record
    with the window it is applied to (`longthread.verify` checks the record's covered hash
    there)."""
    fold = LedgerFold(messages, before)
    for record in records:
        fold.apply(record)
    return fold.window()


class LedgerFold:
    """`fold_ledger`, one record at a time, so that many windows of one session come from one
    pass: `verify` folded the whole ledger again for every served context.

    Each message joins the fold only when the first record that could cover it comes up (a
    record covers messages stored before it, so up to its newest covered one), not all at
    the start: `apply_record` costs the size of the window it is given, and a fold that
    carried every turn through every record cost turns x records (35 s at 100,000 messages
    and 995 records, `bench/replay_fold.py`; hours at a million). The windows it passes
    through are the same."""

    def __init__(self, messages: Sequence[Message],
                 before: Callable[[WindowState, CompactionRecord], None] | None = None) -> None:
        self.messages = messages
        self._order = {m.id: n for n, m in enumerate(messages)}
        self._by_id = {m.id: m for m in messages}
        self._before = before
        self.state = WindowState()
        self.joined = 0  # messages[:joined] have joined the fold
        self.applied = 0  # records applied

    def reach(self, record: CompactionRecord) -> int:
        """How many of the messages must have joined before `record` applies."""
        return 1 + max((self._order.get(i, -1) for i in record.covered_ids), default=-1)

    def apply(self, record: CompactionRecord) -> None:
        reach = self.reach(record)
        if reach > self.joined:
            self.state = WindowState(summaries=self.state.summaries, messages=(
                *self.state.messages, *self.messages[self.joined:reach]))
            self.joined = reach
        if self._before is not None:
            self._before(self.state, record)
        self.state = apply_record(self.state, record, originals=self._by_id, order=self._order)
        self.applied += 1

    def window(self, upto: int | None = None) -> WindowState:
        """The window so far, with the messages before `upto` (all by default) that no record
        has needed yet."""
        stop = len(self.messages) if upto is None else upto
        return WindowState(summaries=self.state.summaries,
                           messages=(*self.state.messages, *self.messages[self.joined:stop]))


class Archived:
    """A session's messages with their seqs (in seq order) and its ledger, read once for many
    rebuilds: `verify` rebuilt each served context from fresh reads of every message before
    it, quadratic in a session served once a turn. Windows asked for in the order they were
    served come from one fold of the ledger (`LedgerFold`), each the fold so far plus the
    turns since; one behind it is folded on its own."""

    def __init__(self, messages: Sequence[tuple[int, Message]],
                 ledger: Sequence[CompactionRecord]) -> None:
        self.messages = messages
        self.ledger = ledger
        self.by_id = {m.id: (seq, m) for seq, m in messages}
        self.originals = {m.id: m for _, m in messages}
        self._seqs = [seq for seq, _ in messages]
        self._record_seqs = [r.seq for r in ledger]
        self._fold: LedgerFold | None = None

    def window_at(self, turn: int, ledger_seq: int) -> WindowState:
        """The window after the messages before `turn`, with the records before `ledger_seq`
        applied: `fold_ledger` of those, from the running fold when it is not past them."""
        count = bisect_left(self._seqs, turn)
        records = bisect_left(self._record_seqs, ledger_seq)
        if self._fold is None:
            self._fold = LedgerFold([by_reference(m) for _, m in self.messages])
        fold = self._fold
        ahead = self.ledger[fold.applied:records]
        if fold.applied > records or fold.joined > count or any(
                fold.reach(r) > count for r in ahead):  # behind the fold, or a record that
            return fold_ledger(fold.messages[:count], self.ledger[:records])  # needs later turns
        for record in ahead:
            fold.apply(record)
        return fold.window(count)
