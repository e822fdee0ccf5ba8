"""Engine 13's extractive rules: a number said only in boilerplate is a slot of its form, and a
sentence quoted by a clause may later be quoted whole.

Each test also runs the pass under the rules before (`summary_rules(engine13=False)`, which an
older assembly version's condensing still follows) and checks that it differs there, so the
test can fail.
"""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from memory.extractive import _HeuristicMeter, extractive_summary
from memory.facts import (
    SPECIFIC,
    boilerplate,
    fact_terms,
    form_of,
    summary_rules,
    term_weights,
)
from memory.models import Message, ToolCall
from memory.tokens import HeuristicCounter, ScriptCounter

HEURISTIC = HeuristicCounter()


def _both(messages: list[Message], budget: int) -> tuple[str, str]:
    """The summary's text under engine 13's rules, and under the rules before them."""
    now = extractive_summary(messages, budget, counter=HEURISTIC).text
    with summary_rules(engine13=False):
        before = extractive_summary(messages, budget, counter=HEURISTIC).text
    return now, before


def _log(seed: int, pasted: bool) -> tuple[list[Message], list[str]]:
    """A job log in chunks: routine lines full of counters, now and then an error line with
    an order number no other line has."""
    rng = random.Random(seed)
    errors: list[str] = []
    out: list[Message] = [Message(id="u0", role="user", content="Watch the nightly import.")]
    for step in range(8):
        lines = []
        for k in range(25):
            stamp = f"2026-11-03T0{step}:{k:02d}:{rng.randint(0, 59):02d}Z"
            if rng.random() < 0.06:
                order = f"{rng.randint(10_000, 99_999)}"
                errors.append(order)
                lines.append(f"{stamp} ERROR refund issued twice for order {order}")
            elif k % 2:
                lines.append(f"{stamp} INFO processed batch {rng.randint(1, 9999)} ok in "
                             f"{rng.randint(2, 900)} ms")
            else:
                lines.append(f"{stamp} DEBUG heartbeat worker-{rng.randint(1, 16)} "
                             f"queue={rng.randint(0, 64)}")
        text = "\n".join(lines)
        if pasted:
            out.append(Message(id=f"p{step}", role="user", content="Next part:\n" + text))
        else:
            out.append(Message(id=f"a{step}", role="assistant", content="", tool_calls=(
                ToolCall(id=f"c{step}", name="tail", arguments="{}"),)))
            out.append(Message(id=f"t{step}", role="tool", tool_call_id=f"c{step}",
                               content=text))
        out.append(Message(id=f"r{step}", role="assistant", content="Still running."))
    return out, errors


def test_a_logs_rare_lines_beat_its_counters() -> None:
    """A session 26 user test's finding: the summary of a pasted log quoted 31 "processed
    batch N ok" lines and none of 18 "ERROR ... refund issued twice" lines. Each routine line
    brought a unique number, weighed as a rare, specific fact."""
    for seed in range(6):
        for pasted in (True, False):
            messages, errors = _log(seed, pasted)
            now, before = _both(messages, 400)
            quoted = [e for e in errors if e in now]
            routine = now.count(" INFO ") + now.count(" DEBUG ")
            assert len(quoted) * 4 >= len(errors) * 3, (seed, pasted, now)
            assert len(quoted) > sum(1 for e in errors if e in before), (seed, pasted)
            assert routine < len(quoted), (seed, pasted, now)


def test_a_number_said_outside_boilerplate_stays_specific() -> None:
    """Slots are numbers said only in lines of a form said three times or more; the same
    number in a sentence of its own is a fact. Twice is not boilerplate: a value and its
    update."""
    texts = ["ERROR refund issued twice for order 52617", "ERROR refund issued twice for "
             "order 11111", "ERROR refund issued twice for order 22222",
             "My order 52617 never arrived", "I had 12 dogs", "Now I have 13 dogs"]
    docs = [fact_terms(t) for t in texts]
    forms = [form_of(t) for t in texts]
    plate = boilerplate(docs, forms)
    assert plate is not None and plate.slots == {"11111", "22222"}
    weights = term_weights(docs, texts, plate=plate)
    assert weights["52617"] > SPECIFIC and weights["11111"] == 0.0  # said by the customer too
    assert plate.lines[1] is not None and 0 < weights[plate.lines[1]] < weights["52617"]
    assert plate.lines[1] != plate.lines[2] and plate.lines[3] is None
    assert weights["13"] == weights["12"] > weights["dogs"]  # a form said twice: facts
    with summary_rules(engine13=False):
        assert boilerplate(docs, forms) is None


def test_a_sentence_quoted_by_its_clause_can_be_quoted_whole() -> None:
    """The cheapest clause of a long sentence was taken first, and the rest of the sentence,
    with the name that mattered, could never be quoted: not even with room for everything."""
    said = [("Ana", "Any news on my order?"), ("Ben", "I checked and it is on its way."),
            ("Ana", "I will be abroad next month, so please send everything to my colleague "
                    "Lindqvist instead."),
            ("Ben", "Noted, I will tell the courier."), ("Ana", "The gate code is 4471."),
            ("Ben", "Thanks, that helps the driver.")]
    convo = [Message(id=f"m{i}", role="user", name=n, content=t)
             for i, (n, t) in enumerate(said, start=1)]
    for budget in (40, 80):
        now, before = _both(convo, budget)
        assert "colleague Lindqvist" in now and "Lindqvist" not in before, (budget, now)
        assert HEURISTIC.count(now) <= budget
        assert now.count("[m3]") == 1  # the clause gave way to its sentence: one line


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(max_size=60).filter(lambda t: not any(
    0xD800 <= ord(c) <= 0xDFFF for c in t)), min_size=1, max_size=12), st.data())
def test_meter_counts_a_line_put_in_anothers_place(lines: list[str], data: st.DataObject
                                                   ) -> None:
    """The fast path meters an upgrade as one line taken out and another put in."""
    for counter in (HEURISTIC, ScriptCounter()):
        meter = _HeuristicMeter(counter.scripts)
        stats = [meter.stats(line) for line in lines]
        for s in stats:
            meter.add(s)
        k = data.draw(st.integers(0, len(lines) - 1))
        longer = lines[k] + data.draw(st.text(max_size=30).filter(lambda t: not any(
            0xD800 <= ord(c) <= 0xDFFF for c in t)))
        swapped = [*lines[:k], longer, *lines[k + 1:]]
        new = meter.stats(longer)
        assert meter.count_with(new, stats[k]) == counter.count("\n".join(swapped))
        meter.add(new, stats[k])
        assert meter.count() == counter.count("\n".join(swapped))


def test_short_answers_and_focused_numbers_are_not_slots() -> None:
    """A review's findings: "84721.", "94107.", "4242." share the empty form, and "My order
    is X" a one-word one, so all were slots and a summary kept none of three short answers;
    and a number the caller's focus names lost its weight as a slot."""
    said = [("assistant", "What is your order number?"), ("user", "84721."),
            ("assistant", "And the billing zip code?"), ("user", "94107."),
            ("assistant", "And the last four digits of the card?"), ("user", "4242."),
            ("assistant", "I can see the charge was applied twice on the same day, sorry."),
            ("user", "Please make sure the refund goes back to the original card quickly.")]
    convo = [Message(id=f"m{i}", role=r, content=t) for i, (r, t) in enumerate(said)]
    now = extractive_summary(convo, 40, counter=HEURISTIC).text
    assert all(n in now for n in ("84721", "94107", "4242")), now
    ticket = [Message(id=f"t{i}", role="assistant", content=(
        f"Ticket {4500 + i} was updated by the agent in {100 + 7 * i} ms.")) for i in range(40)]
    ticket.append(Message(id="u", role="user", content="The printer on floor two jams again, "
                          "the one by the kitchen."))
    focused = extractive_summary(ticket, 30, focus="4521", counter=HEURISTIC).text
    assert "Ticket 4521 was updated" in focused, focused
    plate = boilerplate([fact_terms(m.content) for m in ticket],
                        [form_of(m.content) for m in ticket], ["4521"])
    assert plate is not None and "4521" not in plate.slots and "4522" in plate.slots
