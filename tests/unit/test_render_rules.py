"""Every rendered request keeps the providers' documented rules, for any window of any agent.

The agents drawn here misbehave the ways real ones do: ids reused per turn (`call_0`), ids in
another alphabet (`functions.lookup:0`), a call whose result never came (a crash), a result
sent twice (a retry), a user message while a tool runs, and windows cut anywhere by the
budget, so the oldest kept turn may be the model's or a lone result. The rules checked are
the ones each API answers with a 400 when broken."""

from __future__ import annotations

import itertools
import json
import re
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from memory.assembly import assemble_context
from memory.models import ContextWindow, Message, ToolCall
from memory.render import MAX_CACHE_BREAKPOINTS, to_anthropic, to_openai, to_responses
from tests.unit.strategies import summaries, text

PROPERTY = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
CALL_IDS = st.one_of(st.sampled_from(["call_0", "call_1", "functions.lookup:0", "toolu 1"]),
                     st.integers(0, 10**6).map(lambda n: f"c{n}"))
API_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


@st.composite
def messy_agent(draw: st.DrawFn) -> list[Message]:
    messages: list[Message] = []

    def add(role: str, **fields: Any) -> None:
        messages.append(Message(id=f"m{len(messages)}", role=role, **fields))

    for _ in range(draw(st.integers(1, 14))):
        kind = draw(st.sampled_from(["user", "assistant", "tools"]))
        if kind != "tools":
            add(kind, content=draw(text))
            continue
        calls = tuple(ToolCall(id=draw(CALL_IDS), name="lookup", arguments='{"q": 1}')
                      for _ in range(draw(st.integers(1, 3))))
        add("assistant", content=draw(st.sampled_from(["", "Checking."])), tool_calls=calls)
        if draw(st.integers(0, 5)) == 0:
            add("user", content="Any news?")  # the user speaks while the tools run
        for call in calls:
            for _ in range(draw(st.sampled_from([1, 1, 1, 1, 0, 2]))):  # crash, retry
                add("tool", tool_call_id=call.id, content=draw(text))
    return messages


def _window(data: st.DataObject) -> ContextWindow:
    convo = data.draw(messy_agent())
    return assemble_context(
        max_tokens=data.draw(st.integers(20, 2500)), summaries=data.draw(summaries()),
        system=[Message(id="sys", role="system", content="You are a support agent.")],
        recent=convo)


@PROPERTY
@given(st.data())
def test_anthropic_requests_keep_the_messages_api_rules(data: st.DataObject) -> None:
    window = _window(data)
    system, sent = to_anthropic(window)
    messages = json.loads(json.dumps(sent))
    blocks = [*system, *(b for m in messages for b in m["content"])]
    assert sum("cache_control" in b for b in blocks) <= MAX_CACHE_BREAKPOINTS
    if not messages:  # only when the budget left no turn with text to send
        assert not any(m.role in ("user", "assistant") and m.content.strip()
                       for m in window.messages)
        return
    assert messages[0]["role"] == "user"
    assert messages[0]["content"][0]["type"] != "tool_result"  # no call before it was sent
    roles = [m["role"] for m in messages]
    assert all(a != b for a, b in itertools.pairwise(roles))  # alternating turns
    uses = [b["id"] for b in blocks if b["type"] == "tool_use"]
    assert len(uses) == len(set(uses)) and all(API_ID.fullmatch(u) for u in uses)
    for n, message in enumerate(messages):
        assert message["content"], message
        asked = [b["id"] for b in message["content"] if b["type"] == "tool_use"]
        following = messages[n + 1]["content"] if n + 1 < len(messages) else []
        answered = [b["tool_use_id"] for b in following if b["type"] == "tool_result"]
        if asked:  # answered in the next turn, once each, results before any text
            assert sorted(answered) == sorted(asked)
            kinds = [b["type"] for b in following]
            assert kinds[: len(answered)] == ["tool_result"] * len(answered)
        elif message["role"] == "assistant":
            assert not answered  # a result answers the turn right before it


@PROPERTY
@given(st.data())
def test_openai_requests_keep_the_chat_completions_rules(data: st.DataObject) -> None:
    messages = json.loads(json.dumps(to_openai(_window(data))))
    pending: list[str] = []  # calls of the last assistant message not yet answered
    for message in messages:
        if message["role"] == "tool":
            assert message["tool_call_id"] in pending, "a tool message must answer a call " \
                "of the assistant message right before it"
            pending.remove(message["tool_call_id"])
            continue
        assert not pending, "an assistant message with tool_calls must be followed by a " \
            "tool message for each call"
        if "name" in message:
            assert API_ID.fullmatch(message["name"])
        calls = [c["id"] for c in message.get("tool_calls", [])]
        assert len(calls) == len(set(calls))
        assert all(API_ID.fullmatch(c) for c in calls)
        pending = calls
    assert not pending


@PROPERTY
@given(st.data())
def test_responses_inputs_keep_the_responses_api_rules(data: st.DataObject) -> None:
    """Each function_call is answered by one function_call_output, which follows it (the API
    refuses "No tool output found for function call"), ids unique and in its alphabet."""
    window = _window(data)
    items = json.loads(json.dumps(to_responses(window)))
    calls = [i["call_id"] for i in items if i["type"] == "function_call"]
    assert len(calls) == len(set(calls)) and all(API_ID.fullmatch(c) for c in calls)
    answered: list[str] = []
    for n, item in enumerate(items):
        assert "id" not in item
        if item["type"] == "function_call_output":
            assert item["call_id"] in calls[: sum(i["type"] == "function_call"
                                                  for i in items[:n])]
            answered.append(item["call_id"])
        elif item["type"] == "message":
            assert item["role"] in ("system", "user", "assistant") and item["content"].strip()
    assert sorted(answered) == sorted(calls)
    chat = json.loads(json.dumps(to_openai(window)))  # the same pairs as Chat Completions
    assert calls == [c["id"] for m in chat for c in m.get("tool_calls", [])]


def test_arguments_nested_past_the_parser_are_sent_raw() -> None:
    """Arguments are stored verbatim; a call of 50,000 nested arrays raised RecursionError in
    every Anthropic rendering of its session's windows (session 25's security review)."""
    for deep in ("[" * 50_000 + "]" * 50_000, "[" * 250 + "]" * 250):  # parser, serializer
        _sent_raw(deep)
    shallow = '{"a": ' * 60 + "1" + "}" * 60
    # 60 levels are sent as the object they are.
    window = assemble_context(max_tokens=200_000, recent=_calling(shallow))
    _, sent = to_anthropic(window)
    uses = [b for m in json.loads(json.dumps(sent)) for b in m["content"]
            if b["type"] == "tool_use"]
    assert uses[0]["input"] == json.loads(shallow)


def _calling(arguments: str) -> list[Message]:
    return [Message(id="u", role="user", content="Run it."),
            Message(id="a", role="assistant", tool_calls=(
                ToolCall(id="call_1", name="run", arguments=arguments),)),
            Message(id="t", role="tool", tool_call_id="call_1", content="done")]


def _sent_raw(deep: str) -> None:
    window = assemble_context(max_tokens=200_000, recent=_calling(deep))
    _, sent = to_anthropic(window)
    messages: list[dict[str, Any]] = json.loads(json.dumps(sent))
    uses = [b for m in messages for b in m["content"] if b["type"] == "tool_use"]
    assert [b["input"] for b in uses] == [{"raw": deep}]
