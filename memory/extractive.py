"""Extractive summarization: the fewest tokens that keep the most distinct facts.

It cannot hallucinate (every line quotes a verbatim substring of one message, so `quoted_ids`
and the `- [id] speaker: text` lines trace to originals), needs no model and is deterministic:
the offline default and the fallback when a provider keeps failing. Lines from dated messages
go under a `## 2023-05-08` line for their day (engine version 8), as retrieved lines carry
theirs, so a fact a later one superseded can be told from it by more than line order.

It keeps what later questions ask about, not what the span talks about most (centrality, the
previous score, quoted 0.3-0.5% of the LoCoMo evidence retrieval missed). The span's content
terms are the facts to cover, weighted by how specific they are: inverse document frequency
within the span, raised for names, numbers and dates and for the caller's `focus`. Quotes are
picked greedily by uncovered weight per token of their line, so a quote repeating what is kept
gains nothing (near-duplicates drop out), and a long sentence may be quoted by its clause that
carries the facts. Close to linear time: gains only shrink, so a lazy greedy re-scores a
candidate only when it surfaces, and the default counter's budget is metered incrementally.
"""

from __future__ import annotations

import heapq
import math
from bisect import insort
from collections.abc import Callable, Sequence
from typing import NamedTuple

from pydantic import BaseModel, ConfigDict

from memory.facts import (
    boilerplate,
    clauses,
    engine13_on,
    engine14_on,
    fact_terms,
    form_of,
    term_weights,
)
from memory.messages import utc_instant
from memory.models import Message
from memory.text import sentences, terms
from memory.tokens import (
    HeuristicCounter,
    ScriptCounter,
    TextStats,
    TokenCounter,
    count_stats,
    default_counter,
    text_stats,
)

__all__ = ["DAY_HEADER", "TOOL_LINE", "Extract", "ExtractiveSummary", "extractive_summary",
           "is_tool_speaker", "line_day", "render_extracts", "tool_speaker"]

# Metadata of a merge's pseudo-message (`memory.hierarchy`) that re-reads a summary's line
# quoting a tool result: its sentences are a tool's to `memory.facts.boilerplate` (engine 14).
TOOL_LINE = "longthread.summary_tool_line"


def tool_speaker(name: str | None) -> str:
    """How a summary line names a tool result's speaker (engine 14): `tool`, or `tool:NAME`
    for a named tool, so a merge knows it from a person's (`is_tool_speaker`)."""
    return f"tool:{name}" if name else "tool"


def is_tool_speaker(speaker: str) -> bool:
    return speaker == "tool" or speaker.startswith("tool:")

# A quote's gain is its uncovered weight to this power, per token of its line: slightly
# concave, so a clause with the facts beats the whole long sentence around it. This and
# `memory.facts.SPECIFIC` were picked on all of LoCoMo-dev (the agent loop's no-query window,
# all budgets) from 1, 3/4, 1/2, 1/3 and from 1, 1.5, 2.5, 4, 8 (8 lost verbatim recall at
# 4,000).
GAIN_EXPONENT = 0.75


class Extract(BaseModel):
    model_config = ConfigDict(frozen=True)

    message_id: str
    speaker: str
    sentence: str
    day: str | None = None  # the quoted message's day (UTC), when it is dated


class ExtractiveSummary(BaseModel):
    model_config = ConfigDict(frozen=True)

    extracts: tuple[Extract, ...]
    text: str
    tokens: int

    @property
    def quoted_ids(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(e.message_id for e in self.extracts))


class _Candidate(NamedTuple):
    """A quotable part of a sentence; only chosen ones become (validated) `Extract`s."""

    message_id: str
    speaker: str
    sentence: str
    day: str | None


DAY_HEADER = "## "  # then the day: the lines below it, to the next such line, are from it


def line_day(message: Message) -> str | None:
    """The day (UTC) a message's quoted lines go under, or None when it is undated."""
    return None if message.created_at is None else \
        utc_instant(message.created_at).date().isoformat()


def _line(message_id: str, speaker: str, sentence: str) -> str:
    return f"- [{message_id}] {speaker}: {sentence}"


def _with_days(lines: Sequence[tuple[str, str | None]]) -> str:
    """(line, day) pairs as text: a day line wherever the day changes. An undated line takes no
    day line of its own: it stands where it was said, among the lines around it. A day costs
    its line once per run of lines, not once per line (on LoCoMo a stored summary's 22 lines
    come from 3 to 8 days)."""
    out: list[str] = []
    current: str | None = None
    for line, day in lines:
        if day is not None and day != current:
            out.append(DAY_HEADER + day)
            current = day
        out.append(line)
    return "\n".join(out)


def render_extracts(extracts: Sequence[Extract]) -> str:
    return _with_days([(_line(e.message_id, e.speaker, e.sentence), e.day) for e in extracts])


class _HeuristicMeter:
    """Exact `HeuristicCounter` (or `ScriptCounter`) counts of a growing selection, updated in
    O(1) per line: what the heuristic reads of a text (`TextStats`) adds up over lines (plus a
    "\\n" between them). `extractive_summary` checks the final text against the real counter
    and redoes the selection the generic way if they ever disagree."""

    _JOIN = TextStats(1, 0, 1)  # the "\\n" between the text so far and a new line

    def __init__(self, scripts: bool) -> None:
        self.scripts = scripts
        self.totals = TextStats(0, 0, 0)
        self.lines = 0

    def stats(self, line: str) -> TextStats:
        return text_stats(line, self.scripts)

    def _after(self, stats: TextStats, replaced: TextStats | None) -> TextStats:
        if replaced is not None:
            return self.totals - replaced + stats
        return self.totals + stats + (self._JOIN if self.lines else TextStats(0, 0, 0))

    def count_with(self, stats: TextStats, replaced: TextStats | None = None) -> int:
        """The count with one more line (its `stats`), wherever it goes, or with it in place
        of a line already counted (`replaced`): totals add up."""
        return count_stats(self._after(stats, replaced))

    def add(self, stats: TextStats, replaced: TextStats | None = None) -> None:
        self.totals = self._after(stats, replaced)
        self.lines += replaced is None

    def count(self) -> int:
        return count_stats(self.totals)


class _Pool(NamedTuple):
    """The candidates with what selection needs of each: its distinct terms, the sentence it
    belongs to (one quote per sentence), its line's token cost, and each sentence's whole
    candidate (the first of its group; the others are its clauses)."""

    candidates: list[_Candidate]
    terms: list[tuple[str, ...]]
    group: list[int]
    cost: list[int]
    weights: dict[str, float]
    whole: list[int]


# fits(chosen, candidate, the chosen clause it would replace or None); accept(candidate, same)
_Fits = Callable[[list[int], int, int | None], bool]
_Accept = Callable[[int, int | None], None]


def _select(pool: _Pool, fits: _Fits, accept: _Accept) -> list[int]:
    """Lazy greedy by uncovered weight per token: take the best candidate whose line still
    fits, cover its terms, re-score the others only when they surface (their gains can only
    have shrunk). Ties go to the earlier candidate. Returns indices in conversation order.

    Engine 13: a sentence quoted by a clause may later be quoted whole in its place, at the
    cost of what it adds. Before, its cheapest clause was often taken first and the rest of
    the sentence was lost for good: "I will be abroad next month" was kept and "so please send
    everything to my colleague Lindqvist instead" never could be."""
    weights = pool.weights
    covered: set[str] = set()
    quoted: dict[int, int] = {}  # a sentence (group) -> the candidate quoted from it
    upgrades = engine13_on()

    def gain(i: int) -> float:
        total = math.fsum(weights[t] for t in pool.terms[i] if t not in covered)
        return float(total ** GAIN_EXPONENT)

    def ratio(i: int) -> float:
        held = quoted.get(pool.group[i])
        extra = pool.cost[i] if held is None else max(1, pool.cost[i] - pool.cost[held])
        return gain(i) / extra

    heap = [(-ratio(i), i) for i in range(len(pool.candidates))]
    heapq.heapify(heap)
    chosen: list[int] = []
    while heap:
        neg, i = heapq.heappop(heap)
        held = quoted.get(pool.group[i])
        if held is not None and not (upgrades and i == pool.whole[pool.group[i]] != held):
            continue
        now = ratio(i)
        if now <= 0.0:
            continue
        if now != -neg:  # stale: covered terms since it was scored
            heapq.heappush(heap, (-now, i))
            continue
        if not fits(chosen, i, held):
            continue
        if held is not None:
            chosen.remove(held)
        insort(chosen, i)
        accept(i, held)
        quoted[pool.group[i]] = i
        covered.update(pool.terms[i])
        whole = pool.whole[pool.group[i]]
        if upgrades and whole != i:  # the sentence whole now costs only what it adds
            heapq.heappush(heap, (-ratio(whole), whole))
    return chosen


def _pool(messages: Sequence[Message], focus: str | None, counter: TokenCounter,
          metered: Callable[[_Candidate], str]) -> _Pool | None:
    candidates: list[_Candidate] = []
    cand_terms: list[tuple[str, ...]] = []
    group: list[int] = []
    docs: list[list[str]] = []
    texts: list[str] = []
    machine: list[bool] = []  # the sentence is a tool result's (`term_weights`)
    tooled: list[bool] = []  # or a summary's line quoting one (`boilerplate`)
    forms: list[tuple[str, ...]] = []  # the sentence's form, numbers masked (`term_weights`)
    whole: list[int] = []  # each sentence's whole candidate
    speakers = frozenset(m.name.lower() for m in messages if m.name)
    fields = engine14_on()
    for message in messages:
        if message.role == "system":
            continue
        speaker = message.name or message.role
        if fields and message.role == "tool":  # engine 14: still a tool's line to a merge
            speaker = tool_speaker(message.name)
        day = line_day(message)
        for sentence in sentences(message.content):
            words = fact_terms(sentence, speakers)
            if not words:
                continue
            parts = [sentence, *clauses(sentence)]
            part_terms = [tuple(sorted(set(fact_terms(part, speakers)))) for part in parts]
            # A clause's trimmed edge can change a term ("faith-" → "faith"): count both.
            docs.append([*words, *{t for ts in part_terms[1:] for t in ts} - set(words)])
            texts.append(sentence)
            machine.append(message.role == "tool")
            tooled.append(message.role == "tool" or message.metadata.get(TOOL_LINE) is True)
            forms.append(form_of(sentence))
            whole.append(len(candidates))
            for part, these in zip(parts, part_terms, strict=True):
                candidates.append(_Candidate(message.id, speaker, part, day))
                cand_terms.append(these)
                group.append(len(docs) - 1)
    if not candidates:
        return None
    focused = terms(focus) if focus else []
    plate = boilerplate(docs, forms, focused, tooled)
    if plate is not None:  # a line of boilerplate is worth its line's term (`term_weights`)
        for i, k in enumerate(group):
            line = plate.lines[k]
            if line is not None and plate.slots.intersection(cand_terms[i]):
                cand_terms[i] = (*cand_terms[i], line)
    weights = term_weights(docs, texts, focused, machine, plate)
    cost = [max(1, counter.count(metered(c))) for c in candidates]
    return _Pool(candidates, cand_terms, group, cost, weights, whole)


def extractive_summary(
    messages: Sequence[Message],
    max_tokens: int,
    focus: str | None = None,
    counter: TokenCounter | None = None,
    shown: Callable[[str], str] | None = None,
) -> ExtractiveSummary:
    """Quote the sentences (or clauses of long ones) that cover the most specific facts per
    token, in conversation order, each tagged with its message id and speaker; the text never
    exceeds `max_tokens`. Of quotes with the same terms and cost the earlier one is kept.

    With `shown`, a line is metered with the id a window shows for it (`shown(message_id)`)
    rather than the id it stores; the caller checks the text as shown (`tokens` counts it)."""
    counter = counter or default_counter()

    def metered(c: _Candidate) -> str:
        return _line(shown(c.message_id) if shown else c.message_id, c.speaker, c.sentence)

    pool = _pool(messages, focus, counter, metered)
    if pool is None:
        return ExtractiveSummary(extracts=(), text="", tokens=0)
    candidates = pool.candidates

    def render(chosen: Sequence[int]) -> str:
        return _with_days([(metered(candidates[k]), candidates[k].day) for k in chosen])

    chosen: list[int] | None = None
    if type(counter) in (HeuristicCounter, ScriptCounter):
        # A line of a day not yet chosen brings its day line: metered as one two-line text.
        # Exact while days rise with the conversation; when they do not (a run of a day
        # splits in two), the check below finds the count differs and re-counts instead.
        meter = _HeuristicMeter(isinstance(counter, ScriptCounter))
        days: set[str | None] = {None}
        stats = [meter.stats(metered(c)) for c in candidates]
        dated = [meter.stats(f"{DAY_HEADER}{c.day}\n{metered(c)}") for c in candidates]

        counted: dict[int, TextStats] = {}  # what each chosen line was metered as

        def line_stats(i: int, held: int | None) -> TextStats:
            """A line in place of a clause of its sentence takes the clause's day line."""
            if held is not None:
                return dated[i] if counted[held] is dated[held] else stats[i]
            return stats[i] if candidates[i].day in days else dated[i]

        def fits(_: list[int], i: int, held: int | None) -> bool:
            replaced = None if held is None else counted[held]
            return meter.count_with(line_stats(i, held), replaced) <= max_tokens

        def accept(i: int, held: int | None) -> None:
            counted[i] = line_stats(i, held)
            meter.add(counted[i], None if held is None else counted.pop(held))
            days.add(candidates[i].day)

        chosen = _select(pool, fits, accept)
        if counter.count(render(chosen)) != meter.count():
            chosen = None  # days out of order, or the heuristic changed: re-count exactly
    if chosen is None:
        chosen = _select(
            pool, lambda taken, i, held: counter.count(
                render(sorted([*(k for k in taken if k != held), i]))) <= max_tokens,
            lambda i, held: None)
    extracts = tuple(Extract(message_id=c.message_id, speaker=c.speaker, sentence=c.sentence,
                             day=c.day) for c in (candidates[k] for k in chosen))
    return ExtractiveSummary(extracts=extracts, text=render_extracts(extracts),
                             tokens=counter.count(render(chosen)))
