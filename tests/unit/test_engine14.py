"""Engine 14's summary rules (assembly 19 condenses by them too).

A merge of summaries reads their tool lines as tool output.

A leaf summary weighs a number as specific only where a person or the model said it, not in a
tool result (`memory.facts.term_weights`). A merge re-reads the leaf's lines, and read every
line as a user's: each `"ts": …` line of a tracking lookup brought four rare "said" numbers,
and a level-2 merge of a support ticket kept 28 of them and none of the refund, its reference
or the return authorisation (a user test's finding, session 32).

And a sentence is not quoted by a clause of numbers and dates alone: "October 30" stood in a
summary for a sentence that said what fell on that day."""

from __future__ import annotations

from memory.facts import clauses, summary_rules
from memory.hierarchy import merge_summaries
from memory.models import Summary
from memory.tokens import default_counter

DECISION = "- [m1] assistant: Correction: the refund is $86.40, reference RF-77310, approved today."


def _leaves() -> list[Summary]:
    stamps = [f'- [m{k}] tool: "ts": "2026-10-2{k}T0{k}:1{k}:3{k}.12345{k}Z",' for k in range(2, 8)]
    return [Summary(id="s1", level=1, covers=("m1",), strategy="extractive",
                    content="\n".join(["## 2026-10-28", DECISION, *stamps])),
            Summary(id="s2", level=1, covers=("m9",), strategy="extractive",
                    content="## 2026-10-29\n- [m9] Dana: Hey, just following up.")]


def test_a_merge_keeps_the_decision_over_tool_timestamps() -> None:
    merged = merge_summaries("m", _leaves(), 40, counter=default_counter())
    assert "RF-77310" in merged.content and '"ts"' not in merged.content
    assert merged.quoted_ids[0] == "m1"


def test_before_engine_14_the_timestamps_won() -> None:
    """What an older assembly version's condensing still does, so its windows replay."""
    with summary_rules(engine13=True, engine14=False):
        merged = merge_summaries("m", _leaves(), 40, counter=default_counter())
    assert "RF-77310" not in merged.content and merged.content.count('"ts"') == 2


def test_a_person_named_like_no_tool_is_read_as_before() -> None:
    """Only the `tool` speaker is tool output: a user's numbers stay said."""
    leaves = [leaf.model_copy(update={"content": leaf.content.replace("] tool:", "] Dana:")})
              for leaf in _leaves()]
    with summary_rules(engine13=True, engine14=False):
        before = merge_summaries("m", leaves, 40, counter=default_counter())
    assert merge_summaries("m", leaves, 40, counter=default_counter()) == before


def test_a_clause_of_a_date_alone_is_not_quoted() -> None:
    sentence = ("The replacement clamp ships from Reno, October 30, and the refund posts on "
                "November 16.")
    assert clauses(sentence) == ["The replacement clamp ships from Reno",
                                 "and the refund posts on November 16."]
    with summary_rules(engine13=True, engine14=False):
        assert "October 30" in clauses(sentence)
