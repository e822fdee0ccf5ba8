"""A newest turn larger than the budget is shown cut to fit (assembly version 12).

A user test's agent got `tokens 0` from a 2,000-token context: its newest tool result (a test log)
was larger than the budget, so the recent section was empty and nothing said why."""

from __future__ import annotations

from memory.compaction import WindowState
from memory.cutting import NEWEST_CUT_SHARE, cut_unit
from memory.models import Message, ToolCall
from memory.tokens import default_counter, message_cost
from memory.window import assemble_from_window

LINE = "test_payment_refund ... FAILED: expected 200, got 409 (idempotency key reused)\n"
LOG = LINE * 150  # ~3,000 tokens: over a 2,000 budget, inside the 4,000 the recent slice reads


def _exchange(results: int = 1, body: str = LOG) -> list[Message]:
    calls = tuple(ToolCall(id=f"c{i}", name="run_tests", arguments=f'{{"shard": {i}}}')
                  for i in range(results))
    return [Message(id="u1", role="user", content="Why do the payment tests fail?"),
            Message(id="a1", role="assistant", content="Running them.", tool_calls=calls),
            *(Message(id=f"t{i}", role="tool", tool_call_id=f"c{i}", content=body)
              for i in range(results))]


def test_the_newest_turn_is_cut_to_fit_with_its_question() -> None:
    state = WindowState(messages=tuple(_exchange()))
    window = assemble_from_window(state, max_tokens=2_000)
    assert window.tokens <= 2_000
    assert [m.role for m in window.messages] == ["user", "assistant", "tool"]
    question, call, result = window.messages
    assert question.source_ids == ("u1",) and call.source_ids == ("a1",)
    assert result.tool_call_id == "c0" and result.source_ids == ()  # not verbatim: no id
    assert result.content.startswith(LOG[:200])
    assert result.content.endswith("the whole message is in the archive as t0]")
    # Before version 12 the same window was empty.
    assert assemble_from_window(state, max_tokens=2_000, version=11).messages == ()
    # A result past even the slice's reach (8,000 tokens) is still shown cut; its question,
    # beyond what a 2,000-token context read of the window before version 16, now with it.
    huge = WindowState(messages=tuple(_exchange(body=LINE * 400)))
    for version, roles in ((15, ["assistant", "tool"]), (16, ["user", "assistant", "tool"])):
        window = assemble_from_window(huge, max_tokens=2_000, version=version)
        assert [m.role for m in window.messages] == roles and window.tokens <= 2_000


def test_every_result_of_parallel_calls_gets_an_equal_head_and_short_ones_stay_whole() -> None:
    counter = default_counter()
    unit = _exchange(results=4)[1:]
    short = Message(id="t9", role="tool", tool_call_id="c3", content="ok")
    unit = [*unit[:-1], short]
    cut = cut_unit(unit, 1_500, counter)
    assert cut is not None and sum(m.tokens for m in cut) <= 1_500
    assert [m.tool_call_id for m in cut[1:]] == ["c0", "c1", "c2", "c3"]
    assert cut[-1].content == "ok" and cut[-1].source_ids == ("t9",)
    heads = {len(m.content) for m in cut[1:-1]}
    assert len(heads) == 1  # equal shares of what the short one left
    assert all(m.tokens == message_cost(counter, Message(
        id="x", role=m.role, content=m.content, tool_call_id=m.tool_call_id,
        tool_calls=m.tool_calls)) for m in cut)


def test_a_unit_whose_calls_alone_do_not_fit_is_left_out_and_its_question_shown() -> None:
    counter = default_counter()
    calls = tuple(ToolCall(id=f"c{i}", name="patch_file",
                           arguments=f'{{"path": "src/module_{i}.py", "diff": "{"+x " * 12}"}}')
                  for i in range(64))
    state = WindowState(messages=(
        Message(id="u1", role="user", content="Patch every module."),
        Message(id="a1", role="assistant", content="", tool_calls=calls),
        *(Message(id=f"t{i}", role="tool", tool_call_id=f"c{i}", content="ok")
          for i in range(64))))
    unit = list(state.messages[1:])
    assert sum(message_cost(counter, m.model_copy(update={"content": ""})) for m in unit) \
        > int(2_000 * NEWEST_CUT_SHARE)  # the calls alone outgrow what a cut turn may take
    assert cut_unit(unit, int(2_000 * NEWEST_CUT_SHARE), counter) is None
    window = assemble_from_window(state, max_tokens=2_000)
    assert window.tokens <= 2_000
    assert [m.source_ids for m in window.messages] == [("u1",)]  # no half pair; the question
    assert assemble_from_window(state, max_tokens=2_000, version=11).messages == ()
