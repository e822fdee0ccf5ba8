"""Rolling and hierarchical summarization built on the extractive strategy.

Rolling: one running summary that absorbs each newly compacted span. Hierarchical: level-1
summaries of chunks; when a level holds more than `fanout` summaries, the oldest `fanout` are
summarized into one summary a level up, so the tree stays logarithmic in the conversation.
Summaries of summaries made here are extractive, so every sentence traces to an original id;
a compaction whose leaf summary a model wrote has the model write the merge too
(`written_merge`, see activities/conversation.py).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime

from pydantic import BaseModel, ConfigDict

from memory.extractive import (
    DAY_HEADER,
    TOOL_LINE,
    Extract,
    extractive_summary,
    is_tool_speaker,
    render_extracts,
)
from memory.facts import engine13_on, engine14_on
from memory.models import ContextMessage, Message, Summary
from memory.packing import FENCE, escape_tags, short_line_ids, shown_id
from memory.text import scripts_on
from memory.tokens import TokenCounter, default_counter, message_cost

__all__ = ["CONDENSED_HEADER", "RollingSummary", "chunk_messages", "condense", "merge_summaries",
           "summarize_chunk", "written_merge"]


def summarize_chunk(
    summary_id: str,
    messages: Sequence[Message],
    max_tokens: int,
    focus: str | None = None,
    counter: TokenCounter | None = None,
) -> Summary:
    result = extractive_summary(messages, max_tokens, focus=focus, counter=counter)
    return Summary(
        id=summary_id,
        level=1,
        content=result.text,
        covers=tuple(m.id for m in messages),
        quoted_ids=result.quoted_ids,
    )


_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_DAY = re.compile(re.escape(DAY_HEADER) + r"(\d{4}-\d{2}-\d{2})")  # `memory.extractive`


def _day(line: str) -> datetime | None:
    """The day a day line names (a merge quotes the lines below it under it again)."""
    found = _DAY.fullmatch(line)
    if found is None:
        return None
    try:
        return datetime.fromisoformat(found[1]).replace(tzinfo=UTC)
    except ValueError:  # not a real day: the line is text
        return None


def _as_messages(summaries: Sequence[Summary]) -> list[Message]:
    """Re-read summary lines as pseudo-messages whose ids are the quoted originals.

    Extractive lines (`- [id] speaker: sentence`) keep their original's id, and the day of the
    day line above them (`## 2023-05-08`, engine version 8); an undated line under a day line
    takes that day. Any other text (an abstractive summary's prose) is split into sentences
    attributed to the summary itself, so merging abstractive summaries condenses them instead
    of dropping them all.
    """
    out: list[Message] = []
    tool_lines = engine14_on()  # a tool result's line is marked (engine 14, `boilerplate`)
    for summary in summaries:
        day: datetime | None = None
        extractive = summary.strategy.startswith("extractive")
        for n, line in enumerate(summary.content.splitlines()):
            text = line.strip()
            # Only an extractive summary's day lines are ours: a model's prose is read as it
            # was before engine 8, so stored abstractive summaries condense as they did.
            if extractive and (named := _day(text)) is not None:
                day = named
                continue
            if text.startswith("- [") and "] " in text:
                ident, rest = text[3:].split("] ", 1)
                speaker, _, sentence = rest.partition(": ")
                if sentence.strip():
                    tool = tool_lines and is_tool_speaker(speaker)
                    out.append(Message(id=f"{ident}#{summary.id}.{n}", role="user",
                                       name=speaker, content=sentence, created_at=day,
                                       metadata={TOOL_LINE: True} if tool else {}))
                continue
            text = text.lstrip("-*• ").strip()
            for k, sentence in enumerate(s for s in _SENTENCE_END.split(text) if s.strip()):
                out.append(Message(id=f"{summary.id}#{summary.id}.{n}.{k}", role="user",
                                   name="summary", content=sentence))
    return out


def merge_summaries(
    summary_id: str,
    summaries: Sequence[Summary],
    max_tokens: int,
    focus: str | None = None,
    counter: TokenCounter | None = None,
    shown_ids: bool = False,
) -> Summary:
    """Summarize summaries into one a level up; quoted ids stay those of the originals. The
    result names the summaries it merges and counts their messages; it does not copy their
    `covers` (see `Summary`).

    With `shown_ids` (a compaction's stored merge, engine version 4) `max_tokens` holds for
    the text as a window shows it, as for `ExtractiveSummarizer`; without it (what `condense`
    does for assembly version 6, kept byte for byte) lines are metered with their pseudo ids."""
    folded = {s.id for s in summaries}  # lines from prose cite a summary, not an original

    def shown(pseudo_id: str) -> str:
        original = pseudo_id.split("#", 1)[0]
        return original if original in folded else shown_id(original)

    pseudo = _as_messages(summaries)
    result = extractive_summary(pseudo, max_tokens, focus=focus, counter=counter,
                                shown=shown if shown_ids else None)
    merged = _merged(summary_id, summaries, result.extracts, folded)
    if shown_ids and (counter or default_counter()).count(
            short_line_ids(merged.content, merged.quoted_ids)[0]) > max_tokens:
        return merge_summaries(summary_id, summaries, max_tokens, focus, counter)
    return merged


def _original(extract: Extract) -> Extract:
    """A quote of a pseudo-message (`_as_messages`) as a quote of its original: every field
    kept but the id (the rolling summary once dropped the day when it copied them one by one)."""
    return extract.model_copy(update={"message_id": extract.message_id.split("#", 1)[0]})


def _merged(summary_id: str, summaries: Sequence[Summary], chosen: Sequence[Extract],
            folded: set[str]) -> Summary:
    extracts = [_original(e) for e in chosen]
    return written_merge(summary_id, summaries, render_extracts(extracts),
                         "extractive-hierarchical",
                         tuple(dict.fromkeys(e.message_id for e in extracts
                                             if e.message_id not in folded)))


def written_merge(summary_id: str, summaries: Sequence[Summary], content: str, strategy: str,
                  quoted_ids: tuple[str, ...] = ()) -> Summary:
    """The summary a level up that folds `summaries`, with `content` written for it: by the
    extractive merge, or by the configured summarizer (a model condenses its own summaries
    without cutting their facts to clauses, as the extractive merge did)."""
    ends = [e for e in (s.ends for s in summaries) if e is not None]
    return Summary(
        id=summary_id,
        level=max(s.level for s in summaries) + 1,
        content=content,
        covers=(),
        merges=tuple(s.id for s in summaries),
        covered=sum(s.message_count for s in summaries),
        span=(ends[0][0], ends[-1][1]) if ends else None,
        quoted_ids=quoted_ids,
        strategy=strategy,
    )


def chunk_messages(
    messages: Sequence[Message], chunk_tokens: int, counter: TokenCounter | None = None
) -> list[list[Message]]:
    """Split into consecutive chunks of about `chunk_tokens`, never between a call and result."""
    counter = counter or default_counter()
    chunks: list[list[Message]] = []
    current: list[Message] = []
    used = 0
    for message in messages:
        size = message_cost(counter, message)
        splittable = message.role != "tool"
        if current and splittable and used + size > chunk_tokens:
            chunks.append(current)
            current, used = [], 0
        current.append(message)
        used += size
    if current:
        chunks.append(current)
    return chunks


class RollingSummary(BaseModel):
    """A running summary: each update re-extracts from the old summary plus the new span."""

    model_config = ConfigDict(frozen=True)

    summary: Summary | None = None
    max_tokens: int = 400

    def update(
        self,
        summary_id: str,
        messages: Sequence[Message],
        focus: str | None = None,
        counter: TokenCounter | None = None,
    ) -> RollingSummary:
        counter = counter or default_counter()
        previous = _as_messages([self.summary]) if self.summary else []
        result = extractive_summary([*previous, *messages], self.max_tokens, focus, counter)
        extracts = [_original(e) for e in result.extracts]
        covers = (self.summary.covers if self.summary else ()) + tuple(m.id for m in messages)
        new = Summary(
            id=summary_id,
            level=1,
            content=render_extracts(extracts),
            covers=covers,
            quoted_ids=tuple(dict.fromkeys(e.message_id for e in extracts)),
            strategy="extractive-rolling",
        )
        return RollingSummary(summary=new, max_tokens=self.max_tokens)


GROW_TRIES = 4  # version 6: merges tried again with the room left, to fill an idle summary
CONDENSED_HEADER = "Earlier conversation ({n} messages, {span}), condensed. Quoted data:"
_UNCACHED = ContextMessage(role="system", content="", section="summary")  # `condense`'s miss
_condensed_cache: dict[tuple[tuple[tuple[str, str, int, tuple[str, str] | None, str], ...], int,
                             str,
                             bool, bool, bool, bool, bool, bool], ContextMessage | None] = {}


def condense(summaries: Sequence[Summary], budget: int, counter: TokenCounter, *,
             short_ids: bool = False, fill: bool = False, any_case: bool = False
             ) -> ContextMessage | None:
    """Every summary as one system message of at most `budget` tokens: their lines re-extracted
    together (`memory.hierarchy.merge_summaries`, the sentences most central to all of them),
    so the coarsest view of the whole older conversation fits any budget's summary share.
    None when not even one line fits. Pure; cached by (summary ids, budget, counter, form).

    With `short_ids` (assembly version 6) long ids are shown by their tails
    (`memory.packing.short_line_ids`). The merge counts its lines with their whole ids (and a
    suffix naming the summary), so its result falls short of `budget`; with `fill` what is
    left is offered to it again, up to GROW_TRIES times, while the result fits. Version 6
    fills only an idle window's summary, its one view of the older conversation: where
    retrieval answers a query, what the summary leaves goes to retrieved turns (filling it
    there cost 0.001 to 0.004 of LoCoMo recall)."""
    key = (tuple((s.id, s.content, s.message_count, s.ends, s.strategy) for s in summaries),
           budget,
           counter.name, short_ids, fill, any_case, scripts_on(), engine13_on(),
           engine14_on())
    cached = _condensed_cache.get(key, _UNCACHED)  # one read: another thread may clear it
    if cached is not _UNCACHED:
        return cached
    ends = [e for e in (s.ends for s in summaries) if e is not None]
    bounds = (ends[0][0], ends[-1][1]) if ends else ()
    count = sum(s.message_count for s in summaries)

    def render(text: str, quoted: tuple[str, ...]) -> ContextMessage:
        shown, show = short_line_ids(text, quoted, bounds) if short_ids else (text, str)
        span = f"{show(bounds[0])} … {show(bounds[1])}" if bounds else "none"
        header = CONDENSED_HEADER.format(n=count, span=span)
        content = f"{header}\n<{FENCE}>\n{escape_tags(shown, any_case)}\n</{FENCE}>"
        return ContextMessage(role="system", content=content, source_ids=quoted,
                              section="summary", tokens=counter.count_message("system", content))

    empty = render("", ()).tokens
    room = budget - empty
    out: ContextMessage | None = None
    while room > 0:
        merged = merge_summaries("condensed", summaries, room, counter=counter)
        if not merged.content:
            break
        message = render(merged.content, merged.quoted_ids)
        if message.tokens <= budget:
            out = message
            break
        room -= message.tokens - budget  # the estimate was low: shrink by the overshoot
    for _ in range(GROW_TRIES if fill else 0):
        slack = budget - (out.tokens if out is not None else empty)
        if slack <= 0:
            break
        room += slack
        merged = merge_summaries("condensed", summaries, room, counter=counter)
        if not merged.content:
            continue  # not one line with its whole id fits yet
        message = render(merged.content, merged.quoted_ids)
        if message.tokens > budget or (out is not None and message.content == out.content):
            break
        out = message
    if len(_condensed_cache) > 256:
        _condensed_cache.clear()
    _condensed_cache[key] = out
    return out
