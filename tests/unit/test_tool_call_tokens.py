"""A message costs what a provider is sent: its tool calls' ids, names and arguments too.

Counting the text alone let an agent's `write_file` calls of 25 KB each pass as a few tokens: a
user test's windows went out ~70 times over their budget and the session never compacted."""

from __future__ import annotations

import json

from memory.compaction import WindowState, window_tokens
from memory.models import Message
from memory.policy import CompactionPolicy
from memory.session import Session
from memory.tokens import CALL_OVERHEAD, default_counter, message_cost
from memory.window import assemble_from_window

BODY = "def handler(event):\n    return {'status': 200, 'body': event['path']}\n" * 300


def _write(i: int) -> list[dict[str, object]]:
    call = {"id": f"call_{i}", "name": "write_file",
            "arguments": json.dumps({"path": f"src/mod_{i}.py", "content": BODY})}
    return [{"id": f"a{i}", "role": "assistant", "content": "", "tool_calls": [call]},
            {"id": f"t{i}", "role": "tool", "tool_call_id": f"call_{i}", "content": "ok"}]


def _messages(n: int) -> list[Message]:
    return [Message.model_validate(m) for i in range(n) for m in _write(i)]


def test_a_call_costs_its_id_name_and_arguments() -> None:
    counter = default_counter()
    call, result = _messages(1)
    (tool,) = call.tool_calls
    assert message_cost(counter, call) == (
        counter.count_message("assistant", "") + counter.count(tool.id)
        + counter.count(tool.name) + counter.count(tool.arguments) + CALL_OVERHEAD)
    assert message_cost(counter, call) > 4_000  # the 25 KB body
    assert message_cost(counter, call, tools=False) == counter.count_message("assistant", "")
    assert message_cost(counter, result) == (counter.count_message("tool", "ok")
                                             + counter.count("call_0"))
    plain = Message(id="u", role="user", content="hello there")
    assert message_cost(counter, plain) == counter.count_message("user", "hello there")


def test_a_served_window_of_calls_stays_within_its_budget_counted_with_them() -> None:
    counter = default_counter()
    state = WindowState(messages=(Message(id="u0", role="user", content="Write the files."),
                                  *_messages(6)))
    window = assemble_from_window(state, max_tokens=12_000)
    sent = sum(message_cost(counter, m) for m in window.messages)
    assert window.tokens == sent <= 12_000
    assert 0 < sum(len(m.tool_calls) for m in window.messages) < 6  # not all six fit
    # Version 10, kept for replay, counted the text alone: the same window "fit" in 200 tokens.
    old = assemble_from_window(state, max_tokens=200, version=10)
    assert old.tokens <= 200 < sum(message_cost(counter, m) for m in old.messages)


def test_a_window_of_large_calls_is_compacted() -> None:
    session = Session(policy=CompactionPolicy(context_window=8_000, preserve_recent=2))
    session.add_message("user", "Write the thirty modules.", id="u0")
    for i in range(30):
        session.add_messages(_write(i))
    assert session.ledger, "the window of calls is over the policy: it must compact"
    assert window_tokens(session.window) < 8_000
    context = session.get_context(max_tokens=4_000)
    assert context.tokens <= 4_000
    assert sum(message_cost(default_counter(), m) for m in context.messages) <= 4_000
