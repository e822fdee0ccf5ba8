"""Engine 14's summary rules (assembly 19 condenses by them too).

A tool's sentence whose form recurs is boilerplate however short, and a merge knows a
summary's tool lines by their speaker. A merge re-read every line as a user's, and the short
form rule (FORM_WORDS, which keeps a person's short answers facts) let each `"ts": …` line of
a tracking lookup stand as four rare numbers: a level-2 merge of a support ticket kept 28 of
them and none of the refund, its reference or the return authorisation (a user test's
finding, session 32). A tool line's numbers still weigh as in engine 13, so a log's rare error
line, quoted from a tool result, is still kept over the rest.

And a sentence is not quoted by a clause of numbers and dates alone: "October 30" stood in a
summary for a sentence that said what fell on that day."""

from __future__ import annotations

from memory.facts import clauses, summary_rules
from memory.hierarchy import merge_summaries, summarize_chunk
from memory.models import Message, Summary
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


def test_a_named_tool_is_still_a_tool_to_a_merge() -> None:
    """A LangChain `ToolMessage(name=...)` is stored with its tool's name: its summary line
    says `tool:track_parcel`, not the bare name a merge could not tell from a person's (a
    review's finding)."""
    call = Message(id="t1", role="tool", tool_call_id="c1", name="track_parcel",
                   content='"ts": "2026-10-22T16:53:14Z",')
    assert summarize_chunk("s1", [call], 100).content.endswith(
        '- [t1] tool:track_parcel: "ts": "2026-10-22T16:53:14Z",')
    named = [leaf.model_copy(update={"content": leaf.content.replace(
        "] tool:", "] tool:track_parcel:")}) for leaf in _leaves()]
    merged = merge_summaries("m", named, 40, counter=default_counter())
    assert "RF-77310" in merged.content and '"ts"' not in merged.content


def test_before_engine_14_the_timestamps_won() -> None:
    """What an older assembly version's condensing still does, so its windows replay."""
    with summary_rules(engine13=True, engine14=False):
        merged = merge_summaries("m", _leaves(), 40, counter=default_counter())
    assert "RF-77310" not in merged.content and merged.content.count('"ts"') == 2


def test_a_person_named_like_no_tool_is_read_as_before() -> None:
    """Only the `tool` speaker's lines are a tool's: a person's short answers stay facts."""
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


def test_a_rare_tool_line_keeps_its_weight_in_a_merge() -> None:
    """A log's one error line among chat: its id is still what the merge keeps."""
    leaf = Summary(id="s1", level=1, covers=("t1",), strategy="extractive", content="\n".join([
        "- [t1] tool: ERROR refund worker crashed on batch QX-48213, charge left pending",
        "- [a1] assistant: All quiet on the service so far tonight.",
        "- [a2] assistant: Nothing unusual in the nightly run, still watching."]))
    merged = merge_summaries("m", [leaf], 25, counter=default_counter())
    assert "QX-48213" in merged.content, merged.content
