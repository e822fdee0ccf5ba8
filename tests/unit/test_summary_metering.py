"""Engine version 4: a stored summary's budget holds for the summary as a window shows it.

Version 6 windows show a summary line's long id by its tail, but summaries were cut to their
budget counting whole UUIDs, so ~40% of that budget bought ids the window never showed. Now the
summarizer and a compaction's merge meter lines by their shown ids, and `window_tokens` counts
summaries in the same form; the stored text keeps every whole id.
"""

from __future__ import annotations

import re

from memory.compaction import SUMMARY_OVERHEAD, WindowState, window_tokens
from memory.hierarchy import merge_summaries
from memory.models import Message, Summary
from memory.packing import short_line_ids, shown_summary_text
from memory.summarizer import ExtractiveSummarizer
from tests.unit.test_summary_fit import COUNTER, TOPICS
from tests.unit.test_summary_short_ids import _uuid

LINE_ID = re.compile(r"^- \[([^\]]+)\] ", re.MULTILINE)


def _messages(n: int, ids: list[str] | None = None) -> list[Message]:
    return [Message(id=(ids or [_uuid(i) for i in range(n)])[i], role="user",
                    name="Caroline" if i % 2 else "Melanie",
                    content=f"{TOPICS[i % len(TOPICS)].format(i=i).capitalize()}. "
                            f"Also note {i * 7 % 13} things about item {i}.")
            for i in range(n)]


def _shown_tokens(text: str, quoted: tuple[str, ...]) -> int:
    return COUNTER.count(short_line_ids(text, quoted)[0])


def test_a_summary_of_uuid_messages_spends_its_budget_on_sentences() -> None:
    messages = _messages(120)
    budget = 400
    shown = ExtractiveSummarizer(COUNTER).summarize(messages, budget)
    whole = ExtractiveSummarizer(COUNTER, shown_ids=False).summarize(messages, budget)
    assert _shown_tokens(shown.text, shown.quoted_ids) <= budget
    assert COUNTER.count(whole.text) <= budget
    # More lines fit: the budget no longer buys 36-character ids a window never shows.
    assert len(shown.text.splitlines()) >= 1.3 * len(whole.text.splitlines())
    # What is stored still names every message whole.
    by_id = {m.id: m for m in messages}
    for ident, line in zip(LINE_ID.findall(shown.text), shown.text.splitlines(), strict=True):
        assert ident in by_id and line.split(": ", 1)[1] in by_id[ident].content
    assert set(shown.quoted_ids) == set(LINE_ID.findall(shown.text))


def test_short_ids_are_metered_as_they_were() -> None:
    """LoCoMo-style ids are shown whole, so their summaries are the same bytes as before."""
    messages = _messages(120, [f"D{i // 20 + 1}:{i % 20}" for i in range(120)])
    shown = ExtractiveSummarizer(COUNTER).summarize(messages, 300)
    assert shown == ExtractiveSummarizer(COUNTER, shown_ids=False).summarize(messages, 300)


def test_ids_sharing_a_tail_are_shown_whole_and_the_budget_still_holds() -> None:
    """Two ids with one tail are shown whole (a tail must name one message): the summary is
    then made again, metered whole, rather than pass its budget as shown."""
    ids = [f"{i:04d}aaaa-0000-4000-8000-0000{i % 30:08x}" for i in range(60)]  # i, i+30
    messages = _messages(60, ids)
    budget = 300
    metered_by_tails = ExtractiveSummarizer(COUNTER, shown_ids=False).summarize(messages, 10_000)
    shown = short_line_ids(metered_by_tails.text, metered_by_tails.quoted_ids)[0]
    assert any(len(i) > 30 for i in LINE_ID.findall(shown)), "expected a pair shown whole"
    result = ExtractiveSummarizer(COUNTER).summarize(messages, budget)
    assert _shown_tokens(result.text, result.quoted_ids) <= budget
    assert COUNTER.count(result.text) <= budget  # the fallback: metered whole


def test_a_compactions_merge_is_metered_as_shown_and_condense_is_not() -> None:
    messages = _messages(240)
    summarizer = ExtractiveSummarizer(COUNTER)
    parts = []
    for n in range(4):
        chunk = messages[n * 60:(n + 1) * 60]
        result = summarizer.summarize(chunk, 500)
        parts.append(Summary(id=f"c{n + 1}", level=1, content=result.text,
                             covers=tuple(m.id for m in chunk), quoted_ids=result.quoted_ids))
    stored = merge_summaries("c5-merged", parts, 400, counter=COUNTER, shown_ids=True)
    plain = merge_summaries("c5-merged", parts, 400, counter=COUNTER)
    assert _shown_tokens(stored.content, stored.quoted_ids) <= 400
    assert len(stored.content.splitlines()) > len(plain.content.splitlines())
    assert set(stored.quoted_ids) <= {m.id for m in messages}
    assert COUNTER.count(plain.content) <= 400  # condense's merge: whole ids, as version 6 had


def test_window_tokens_counts_a_summary_as_a_window_shows_it() -> None:
    messages = _messages(80)
    result = ExtractiveSummarizer(COUNTER).summarize(messages[:60], 300)
    summary = Summary(id="c1", level=1, content=result.text,
                      covers=tuple(m.id for m in messages[:60]), quoted_ids=result.quoted_ids)
    state = WindowState(summaries=(summary,), messages=tuple(messages[60:]))
    rest = sum(COUNTER.count_message(m.role, m.content) for m in messages[60:])
    shown = COUNTER.count_message("system", shown_summary_text(summary)) + SUMMARY_OVERHEAD
    assert window_tokens(state, COUNTER) == rest + shown
    assert shown < COUNTER.count_message("system", summary.content) + SUMMARY_OVERHEAD
