from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from memory.extractive import extractive_summary
from memory.hierarchy import RollingSummary, chunk_messages, merge_summaries, summarize_chunk
from memory.models import Message, ToolCall
from memory.tokens import HeuristicCounter
from tests.unit.strategies import conversations

COUNTER = HeuristicCounter()


def _msgs(*texts: str) -> list[Message]:
    return [Message(id=f"m{i}", role="user" if i % 2 else "assistant", content=t,
                    name="Caroline" if i % 2 else "Melanie")
            for i, t in enumerate(texts, start=1)]


TICKET = _msgs(
    "Hi there. My order 4711 has not arrived yet.",
    "Sorry to hear that. The parcel is stuck in Leeds.",
    "The weather is nice today. I like it.",
    "We decided to resend by express on 2023-05-09. Tracking is ZX-99.",
    "I paid 39.99 but the invoice says 49.99. Please refund the difference.",
    "Refund of 10 EUR approved.",
)


@settings(max_examples=500, deadline=None)
@given(conversations(), st.integers(1, 400), st.sampled_from([None, "refund", "Caroline order"]))
def test_extractive_output_is_drawn_from_the_input(
    convo: list[Message], budget: int, focus: str | None
) -> None:
    result = extractive_summary(convo, budget, focus=focus, counter=COUNTER)
    by_id = {m.id: m for m in convo}
    for extract in result.extracts:
        assert extract.sentence in by_id[extract.message_id].content
    assert result.tokens <= budget


def test_extractive_keeps_facts_and_follows_focus() -> None:
    plain = extractive_summary(TICKET, 40, counter=COUNTER)
    assert "4711" in plain.text or "ZX-99" in plain.text
    assert "weather" not in plain.text
    focused = extractive_summary(TICKET, 25, focus="refund invoice", counter=COUNTER)
    assert "efund" in focused.text
    assert set(focused.quoted_ids) <= {m.id for m in TICKET}


def test_chunks_never_split_a_tool_pair() -> None:
    call = Message(id="c", role="assistant", content="", tool_calls=(ToolCall(id="t1", name="f"),
                                                                     ToolCall(id="t2", name="f")))
    results = [Message(id=f"r{i}", role="tool", tool_call_id=f"t{i}", content="x " * 200)
               for i in (1, 2)]
    chunks = chunk_messages([*TICKET, call, *results, *TICKET[:0]], chunk_tokens=30,
                            counter=COUNTER)
    for chunk in chunks:
        ids = [m.id for m in chunk]
        if "c" in ids:
            assert {"r1", "r2"} <= set(ids)
    assert [m.id for chunk in chunks for m in chunk] == [m.id for m in TICKET] + ["c", "r1", "r2"]


def test_hierarchy_merges_summaries_a_level_up_keeping_original_ids() -> None:
    s1 = summarize_chunk("s1", TICKET[:3], 60, counter=COUNTER)
    s2 = summarize_chunk("s2", TICKET[3:], 60, counter=COUNTER)
    assert (s1.level, s1.covers) == (1, ("m1", "m2", "m3"))
    top = merge_summaries("s3", [s1, s2], 40, counter=COUNTER)
    assert top.level == 2
    # It names what it merges and counts their messages, without copying their covers.
    assert (top.covers, top.merges) == ((), ("s1", "s2"))
    assert (top.message_count, top.ends) == (len(TICKET), (TICKET[0].id, TICKET[-1].id))
    assert top.header().startswith(f"Summary of {len(TICKET)} earlier messages ("
                                   f"{TICKET[0].id} … {TICKET[-1].id}), level 2.")
    higher = merge_summaries("s4", [top, summarize_chunk("s5", TICKET[:2], 60, counter=COUNTER)],
                             40,
                             counter=COUNTER)
    assert (higher.level, higher.merges, higher.message_count) == (3, ("s3", "s5"),
                                                                   len(TICKET) + 2)
    assert top.quoted_ids and set(top.quoted_ids) <= {m.id for m in TICKET}
    for line in top.content.splitlines():
        ident = line[3:].split("]", 1)[0]
        sentence = line.split(": ", 1)[1]
        assert sentence in next(m.content for m in TICKET if m.id == ident)


def test_rolling_summary_accumulates_coverage_within_budget() -> None:
    rolling = RollingSummary(max_tokens=30)
    rolling = rolling.update("r1", TICKET[:3], counter=COUNTER)
    rolling = rolling.update("r2", TICKET[3:], counter=COUNTER)
    assert rolling.summary is not None
    assert rolling.summary.covers == tuple(m.id for m in TICKET)
    assert COUNTER.count(rolling.summary.content) <= 30
