"""A Claude agent with extended thinking and tools: its thinking blocks are stored exactly with
the reply, and sent back first in the newest tool step's assistant message, counted in the
budget (assembly version 15), as the Anthropic API requires ("Expected `thinking` or
`redacted_thinking`, but found `tool_use`")."""

from __future__ import annotations

from typing import Any

import pytest
from anthropic.types import RedactedThinkingBlock, TextBlock, ThinkingBlock, ToolUseBlock

from memory.assembly import ASSEMBLY_VERSION
from memory.compaction import WindowState
from memory.errors import InvalidInputError
from memory.models import ContextWindow, Message, message_digest, parse_messages
from memory.render import to_anthropic, to_openai
from memory.thinking import THINKING
from memory.tokens import HeuristicCounter
from memory.window import assemble_from_window, by_reference

COUNTER = HeuristicCounter()
THOUGHT = ThinkingBlock(type="thinking", thinking="The ledger shows two charges; refund one.",
                        signature="EqQBCkgIARABGAIiQL7x==")
REDACTED = RedactedThinkingBlock(type="redacted_thinking", data="EmwKAhgBEgy3va3pzix/LafPsn4a")


def reply(mid: str, call_id: str, thinking: list[Any], text: str | None = None
          ) -> dict[str, Any]:
    """An assistant message as an agent appends Anthropic's reply: its content blocks as the
    SDK returned them (thinking, then text, then the tool call)."""
    blocks: list[Any] = [*thinking, *([TextBlock(type="text", text=text)] if text else []),
                         ToolUseBlock(type="tool_use", id=call_id, name="ledger",
                                      input={"order": 4711})]
    return {"id": mid, "role": "assistant", "content": blocks}


def agent_turns(thought_words: int = 10) -> list[Message]:
    big = ThinkingBlock(type="thinking", signature="sig2==",
                        thinking=" ".join(f"step {k} of the refund check" for k in
                                          range(thought_words)))
    return parse_messages([
        {"id": "sys", "role": "system", "content": "You are the billing agent."},
        {"id": "q", "role": "user", "content": "Was order 4711 refunded?"},
        reply("a1", "toolu_1", [THOUGHT], "Checking the ledger."),
        {"id": "r1", "role": "tool", "tool_call_id": "toolu_1", "content": "charged twice"},
        reply("a2", "toolu_2", [big, REDACTED]),
        {"id": "r2", "role": "tool", "tool_call_id": "toolu_2", "content": "refund r-88"},
    ])


def window(messages: list[Message], budget: int = 4000, version: int = ASSEMBLY_VERSION
           ) -> ContextWindow:
    return assemble_from_window(WindowState(messages=tuple(messages)), max_tokens=budget,
                                counter=COUNTER, version=version)


def anthropic_messages(got: ContextWindow) -> list[Any]:
    """The request's messages, loosely typed for reading their blocks."""
    return list(to_anthropic(got)[1])


def test_thinking_blocks_are_stored_exactly_in_metadata() -> None:
    (stored,) = parse_messages([reply("a1", "toolu_1", [THOUGHT, REDACTED], "Checking.")])
    assert stored.content == "Checking." and [c.id for c in stored.tool_calls] == ["toolu_1"]
    assert stored.metadata[THINKING] == [THOUGHT.model_dump(), REDACTED.model_dump()]
    same = parse_messages([{"id": "a1", "role": "assistant", "content": "Checking.",
                            "tool_calls": [{"id": "toolu_1", "name": "ledger",
                                            "arguments": '{"order": 4711}'}],
                            "metadata": {THINKING: [THOUGHT.model_dump(),
                                                    REDACTED.model_dump()]}}])
    assert message_digest(same[0]) == message_digest(stored)  # one message, two spellings


@pytest.mark.parametrize(("raw", "field", "text"), [
    ({"id": "u", "role": "user", "content": [THOUGHT.model_dump()]},
     "messages[0].content[0].type", "assistant"),
    ({"id": "a", "role": "assistant", "content": [{"type": "thinking", "thinking": "x"}]},
     "messages[0].content[0].signature", "must be text"),
    ({"id": "a", "role": "assistant", "content": "x",
      "metadata": {THINKING: [{**THOUGHT.model_dump(), "cache_control": None}]}},
     f"messages[0].metadata.{THINKING}[0].cache_control", "unexpected"),
    ({"id": "a", "role": "assistant", "content": "x", "metadata": {THINKING: "thought"}},
     f"messages[0].metadata.{THINKING}", "list"),
    ({"id": "u", "role": "user", "content": "x", "metadata": {THINKING: []}},
     f"messages[0].metadata.{THINKING}", "assistant"),
    ({"id": "a", "role": "assistant", "content": [THOUGHT.model_dump(),
                                                  {"type": "text", "text": "x"}],
      "metadata": {THINKING: []}}, f"messages[0].metadata.{THINKING}", "already has"),
])
def test_thinking_that_could_not_be_sent_back_is_refused_by_name(
        raw: dict[str, Any], field: str, text: str) -> None:
    with pytest.raises(InvalidInputError) as caught:
        parse_messages([raw])
    assert caught.value.field == field and text in caught.value.problem


def test_the_running_turn_s_steps_carry_their_thinking_first_and_counted() -> None:
    messages = agent_turns()
    before, now = window(messages, version=14), window(messages)
    carried = {m.source_ids[0]: m.thinking for m in now.messages if m.thinking}
    assert carried == {"a1": tuple(messages[2].metadata[THINKING]),  # type: ignore[arg-type]
                       "a2": tuple(messages[4].metadata[THINKING])}  # type: ignore[arg-type]
    assert now.tokens > before.tokens and now.tokens == sum(m.tokens for m in now.messages)
    sent = anthropic_messages(now)
    assert [m["role"] for m in sent] == ["user", "assistant", "user", "assistant", "user"]
    assert sent[1]["content"][0] == THOUGHT.model_dump()  # each step opens with its own
    assert sent[3]["content"][:2] == messages[4].metadata[THINKING]  # byte for byte
    assert [b["type"] for b in sent[3]["content"]] == ["thinking", "redacted_thinking",
                                                       "tool_use"]
    assert all("thinking" not in str(m) for m in to_openai(now))


def test_a_loop_that_thought_once_sends_that_thinking_with_its_later_steps() -> None:
    """Without interleaved thinking Claude thinks at the start of the turn only: the later
    steps carry none, and the first step's blocks are what the API looks for."""
    steps = parse_messages([
        {"id": "q", "role": "user", "content": "Was order 4711 refunded?"},
        reply("a1", "toolu_1", [THOUGHT]),
        {"id": "r1", "role": "tool", "tool_call_id": "toolu_1", "content": "charged twice"},
        reply("a2", "toolu_2", []),
        {"id": "r2", "role": "tool", "tool_call_id": "toolu_2", "content": "refund r-88"}])
    sent = anthropic_messages(window(steps))
    assert [b["type"] for b in sent[1]["content"]] == ["thinking", "tool_use"]
    assert [b["type"] for b in sent[3]["content"]] == ["tool_use"]


def test_a_user_message_during_a_tool_call_does_not_end_the_turn() -> None:
    """It goes in the same API message as the result, so the step still needs its thinking."""
    steps = parse_messages([
        {"id": "q", "role": "user", "content": "Was order 4711 refunded?"},
        reply("a1", "toolu_1", [THOUGHT]),
        {"id": "u2", "role": "user", "content": "Also check 4712."},
        {"id": "r1", "role": "tool", "tool_call_id": "toolu_1", "content": "charged twice"}])
    sent = anthropic_messages(window(steps))
    assert [b["type"] for b in sent[-2]["content"]] == ["thinking", "tool_use"]
    assert [b["type"] for b in sent[-1]["content"]] == ["tool_result", "text"]


def test_no_thinking_is_sent_once_the_turn_is_over() -> None:
    answered = [*agent_turns(), *parse_messages([
        {"id": "a3", "role": "assistant", "content": "Yes: refund r-88.",
         "metadata": {THINKING: [THOUGHT.model_dump()]}}])]
    assert not any(m.thinking for m in window(answered).messages)  # the reply ended it
    asked = [*answered, *parse_messages([{"id": "q2", "role": "user", "content": "Thanks!"}])]
    assert not any(m.thinking for m in window(asked).messages)


@pytest.mark.parametrize("budget", [150, 300, 600, 1200, 4000])
def test_the_budget_holds_and_thinking_larger_than_the_step_s_share_goes_without(
        budget: int) -> None:
    messages = agent_turns(thought_words=120)  # ~840 tokens of thinking on the newest step
    got = window(messages, budget=budget)
    assert got.tokens <= budget and got.tokens == sum(m.tokens for m in got.messages)
    if budget >= 1200:
        assert [m.source_ids for m in got.messages if m.thinking][-1] == ("a2",)
    else:  # the step is still shown, without thinking its share cannot hold
        (step,) = [m for m in got.messages if m.tool_calls and m.tool_calls[0].id == "toolu_2"]
        assert not step.thinking


@pytest.mark.parametrize("budget", [1000, 4000, 8000])
def test_a_step_cut_to_fit_keeps_its_thinking(budget: int) -> None:
    """A user test: a 30 KB result made the step too large, and it was cut to fit without its
    thinking, so the API would refuse the request; it is cut a little more instead."""
    log = "".join(f"line {n}: processed batch {n} ok\n" for n in range(1000))  # ~30 KB
    steps = parse_messages([
        {"id": "q", "role": "user", "content": "Read the log."},
        reply("a1", "toolu_1", [THOUGHT]),
        {"id": "r1", "role": "tool", "tool_call_id": "toolu_1", "content": log}])
    got = window(steps, budget=budget)
    assert got.tokens <= budget and got.tokens == sum(m.tokens for m in got.messages)
    (step,) = [m for m in got.messages if m.tool_calls]
    assert step.thinking == (THOUGHT.model_dump(),)
    (result,) = [m for m in got.messages if m.role == "tool"]
    assert "cut to fit" in result.content and not result.source_ids
    sent = anthropic_messages(got)
    assert [b["type"] for b in sent[-2]["content"]] == ["thinking", "tool_use"]


@pytest.mark.parametrize("text", [None, "Checking the refund."])
def test_a_step_whose_result_is_pending_sends_neither_call_nor_thinking(
        text: str | None) -> None:
    messages = [*agent_turns()[:-1]]  # r2 not appended yet
    if text:
        messages[-1] = messages[-1].model_copy(update={"content": text})
    got = window(messages)
    assert [m.source_ids[0] for m in got.messages if m.thinking] == ["a1"]  # a2's waits
    sent = anthropic_messages(got)
    assert not any(b["type"] in ("tool_use", "redacted_thinking") and b.get("id") != "toolu_1"
                   for m in sent for b in m["content"])


def test_a_tool_result_shown_whole_does_not_push_the_thinking_out() -> None:
    """A result over 64 KB stands in the window as a preview; its body is shown whole within
    half the budget, less what the running turn's thinking costs."""
    big = "row 4711: charged twice\n" * 3000  # ~72 KB, ~18,000 tokens
    steps = agent_turns(thought_words=2900)  # ~20,000 tokens of thinking on a2
    result = steps[-1].model_copy(update={"content": big})
    state = WindowState(messages=(*steps[:-1], by_reference(result)))
    for bodies in (None, {result.id: result}):
        got = assemble_from_window(state, max_tokens=37_000, counter=COUNTER, bodies=bodies)
        assert [m.source_ids[0] for m in got.messages if m.thinking] == ["a1", "a2"]
        assert got.tokens <= 37_000


def test_a_preamble_merged_into_the_step_still_opens_with_thinking() -> None:
    """Two assistant messages in a row go as one Anthropic message: its thinking first."""
    messages = parse_messages([
        {"id": "q", "role": "user", "content": "Refund 4711?"},
        {"id": "pre", "role": "assistant", "content": "One moment."},
        reply("a1", "toolu_1", [THOUGHT]),
        {"id": "r1", "role": "tool", "tool_call_id": "toolu_1", "content": "done"}])
    sent = anthropic_messages(window(messages))
    assert [b["type"] for b in sent[-2]["content"]] == ["thinking", "text", "tool_use"]
    assert sent[-2]["content"][0] == THOUGHT.model_dump()
