"""The user's message that opened the running turn stays: not compacted while the turn runs
(engine version 11) and shown when the recent turns do not reach back to it (assembly
version 16). A user test ran an autonomous agent 300 steps: its one task was in 1% of the
requests, archived by a light compaction with nothing standing in for it."""

from __future__ import annotations

import json

import pytest

from memory.compaction import WindowState, plan_compaction
from memory.models import Message, ToolCall
from memory.policy import CompactionPolicy
from memory.render import to_anthropic
from memory.tokens import HeuristicCounter
from memory.window import assemble_from_window
from tests.unit.test_golden_windows import autonomous, outgrown

COUNTER = HeuristicCounter()


@pytest.mark.parametrize("budget", [300, 800, 2000, 4000])
def test_an_agents_task_is_in_every_window_of_its_run(budget: int) -> None:
    window = assemble_from_window(autonomous(), max_tokens=budget, counter=COUNTER)
    assert window.tokens <= budget
    recent = [m for m in window.messages if m.section == "recent"]
    assert recent[0].source_ids == ("task",) and recent[-1].role == "tool"
    sent = json.loads(json.dumps(to_anthropic(window)[1]))
    assert sent[0]["role"] == "user" and "payments suite" in sent[0]["content"][0]["text"]


def test_a_turn_cut_to_fit_still_shows_the_question() -> None:
    window = assemble_from_window(outgrown(), max_tokens=800, counter=COUNTER)
    assert [m.role for m in window.messages] == ["user", "assistant", "tool"]
    assert window.messages[0].source_ids == ("q",) and window.tokens <= 800


def test_a_chat_window_is_as_before() -> None:
    """With user messages among the recent turns nothing is added: chats are unchanged."""
    chat = WindowState(messages=tuple(
        Message(id=f"m{n}", role="user" if n % 2 else "assistant",
                content=f"Turn {n}: the parcel left depot {n}.") for n in range(60)))
    for budget in (100, 400):
        assert assemble_from_window(chat, max_tokens=budget, counter=COUNTER, version=15) \
            .messages == assemble_from_window(chat, max_tokens=budget, counter=COUNTER).messages


def test_compaction_keeps_the_task_while_the_turn_runs_and_not_after() -> None:
    policy = CompactionPolicy(context_window=2000, preserve_recent=4)
    running = autonomous()
    plan = plan_compaction(running, policy, force=True, counter=COUNTER)
    assert plan is not None and "task" not in plan.covered_ids and "s0" in plan.covered_ids
    asked_again = WindowState(messages=(*running.messages, Message(
        id="done", role="assistant", content="All green."), Message(  # the turn is over
        id="next", role="user", content="Now the invoices suite."), Message(
        id="s99", role="assistant", content="On it.",
        tool_calls=(ToolCall(id="c99", name="run"),)), Message(
        id="o99", role="tool", tool_call_id="c99", content="ok")))
    plan = plan_compaction(asked_again, policy, force=True, counter=COUNTER)
    assert plan is not None and "task" in plan.covered_ids and "next" not in plan.covered_ids


def test_a_task_larger_than_an_eighth_of_the_window_may_go() -> None:
    policy = CompactionPolicy(context_window=2000, preserve_recent=4)
    long_task = Message(id="task", role="user", content="Requirements: " + "must pass; " * 200)
    state = WindowState(messages=(long_task, *autonomous().messages[2:]))
    plan = plan_compaction(state, policy, force=True, counter=COUNTER)
    assert plan is not None and "task" in plan.covered_ids


def test_an_agents_sdk_step_with_reasoning_keeps_the_task_too() -> None:
    """A reasoning item joins its call's unit (JOINS_NEXT): the unit's first message has no
    calls, yet the step is running."""
    from memory.units import JOINS_NEXT

    messages: list[Message] = [Message(id="task", role="user", content="Fix the refunds.")]
    for n in range(30):
        messages += [
            Message(id=f"r{n}", role="assistant", content=f"(reasoning {n})",
                    metadata={JOINS_NEXT: True}),
            Message(id=f"s{n}", role="assistant", content="",
                    tool_calls=(ToolCall(id=f"c{n}", name="run"),)),
            Message(id=f"o{n}", role="tool", tool_call_id=f"c{n}",
                    content=f"step {n}: " + "ok; " * 60)]
    plan = plan_compaction(WindowState(messages=tuple(messages)),
                           CompactionPolicy(context_window=2000, preserve_recent=4),
                           force=True, counter=COUNTER)
    assert plan is not None and "task" not in plan.covered_ids and "s0" in plan.covered_ids


def test_a_task_larger_than_a_quarter_of_the_budget_is_not_shown_in_place_of_steps() -> None:
    """A review: a task of 3,400 tokens in a 4,000-token window left three steps and no
    summary; the steps keep the room past a quarter of the budget."""
    long_task = Message(id="task", role="user", content="Requirements: " + "must pass; " * 1200)
    state = WindowState(messages=(long_task, *autonomous().messages[2:]))
    window = assemble_from_window(state, max_tokens=4000, counter=COUNTER)
    assert not any(m.source_ids == ("task",) for m in window.messages)
    assert len([m for m in window.messages if m.role == "tool"]) > 10
