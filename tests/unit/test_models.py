from __future__ import annotations

import pytest

from memory.errors import InvalidInputError
from memory.models import (
    MAX_CONTENT_BYTES,
    Message,
    message_digest,
    parse_messages,
    validate_sequence,
)


@pytest.mark.parametrize(
    ("raw", "field", "text"),
    [
        ({"id": "a", "role": "wizard", "content": "x"}, "messages[0].role", "not one of"),
        ({"id": "a", "role": "user", "content": "   "}, "messages[0].content", "must not be empty"),
        ({"id": "a", "role": "user", "content": "x" * (MAX_CONTENT_BYTES + 1)},
         "messages[0].content", f"the limit is {MAX_CONTENT_BYTES} bytes"),
        ({"id": "", "role": "user", "content": "x"}, "messages[0].id", "1 to 200"),
        ({"id": "  ", "role": "user", "content": "x"}, "messages[0].id", "must not be blank"),
        ({"id": "a", "role": "user", "content": "nul\x00"}, "messages[0].content", "NUL"),
        ({"id": "a", "role": "user", "content": "bad \ud800"}, "messages[0].content", "UTF-8"),
        ({"id": "a", "role": "tool", "content": "x"}, "messages[0].tool_call_id", "required"),
        ({"id": "a", "role": "user", "content": "x",
          "tool_calls": [{"id": "c", "name": "f"}]}, "messages[0].tool_calls", "only assistant"),
        ({"id": "a", "role": "user", "content": "x", "surprise": 1}, "messages[0].surprise",
         "Extra inputs"),
    ],
)
def test_bad_messages_name_the_field_and_limit(raw: dict[str, object], field: str,
                                               text: str) -> None:
    with pytest.raises(InvalidInputError) as info:
        parse_messages([raw])
    assert info.value.field == field
    assert text in info.value.problem


def test_duplicate_ids_in_a_batch_are_refused() -> None:
    with pytest.raises(InvalidInputError, match=r"messages\[1\]\.id: duplicate id 'a'"):
        parse_messages([{"id": "a", "role": "user", "content": "x"},
                        {"id": "a", "role": "user", "content": "y"}])


def test_orphan_tool_result_is_refused_but_answered_call_passes() -> None:
    call = Message.model_validate({"id": "a", "role": "assistant", "content": "",
                                   "tool_calls": [{"id": "c1", "name": "f"}]})
    result = Message(id="b", role="tool", tool_call_id="c1", content="42")
    validate_sequence([call, result])
    validate_sequence([result], open_tool_calls={"c1"})
    with pytest.raises(InvalidInputError, match="orphan tool result"):
        validate_sequence([result])


def test_large_body_below_the_limit_and_control_chars_are_kept_verbatim() -> None:
    body = "é" * 900_000 + "\x07\x1b[0m'; DROP TABLE messages; --"
    (message,) = parse_messages([{"id": "big", "role": "user", "content": body}])
    assert message.content == body


def test_tool_calls_as_the_providers_return_them_are_stored_flat() -> None:
    openai_call = {"id": "call_1", "type": "function",
                   "function": {"name": "lookup", "arguments": '{"order": 4711}'}}
    anthropic_call = {"type": "tool_use", "id": "toolu_1", "name": "refund",
                      "input": {"order": 4711, "note": "café"}}
    call, _, call2, _ = parse_messages([
        {"id": "a", "role": "assistant", "content": "", "tool_calls": [openai_call]},
        {"id": "b", "role": "tool", "tool_call_id": "call_1", "content": "late"},
        {"id": "c", "role": "assistant", "content": "", "tool_calls": [anthropic_call]},
        {"id": "d", "role": "tool", "tool_call_id": "toolu_1", "content": "done"},
    ])
    assert call.tool_calls[0].model_dump() == {"id": "call_1", "name": "lookup",
                                               "arguments": '{"order": 4711}'}
    assert call2.tool_calls[0].model_dump() == {
        "id": "toolu_1", "name": "refund", "arguments": '{"order": 4711, "note": "café"}'}
    # The flat form is what is stored and digested: parsing it again changes nothing.
    again = Message.model_validate(call.model_dump())
    assert again == call and message_digest(again) == message_digest(call)


@pytest.mark.parametrize(
    ("tool_call", "field", "text"),
    [
        ({"id": "c", "type": "custom", "function": {"name": "f"}},
         "messages[0].tool_calls[0].type", "'custom' is not 'function'"),
        ({"id": "c", "type": "function", "function": {"name": "f"}, "extra": 1},
         "messages[0].tool_calls[0].extra", "unexpected"),
        ({"id": "c", "type": "function", "function": {"arguments": "{}"}},
         "messages[0].tool_calls[0].name", ""),
    ],
)
def test_bad_provider_shaped_tool_calls_name_the_field(tool_call: dict[str, object],
                                                       field: str, text: str) -> None:
    with pytest.raises(InvalidInputError) as info:
        parse_messages([{"id": "a", "role": "assistant", "content": "",
                         "tool_calls": [tool_call]}])
    assert info.value.field == field
    assert text in info.value.problem
