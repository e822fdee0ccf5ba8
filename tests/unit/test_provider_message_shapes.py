"""Messages appended exactly as the provider SDKs hand them back are stored in the flat form.

An agent loop appends `ChatCompletionMessage.model_dump()` (or Anthropic's content blocks) as
is; when that append was refused, the next tool result was refused too (as an orphan), so one
shape mismatch cascaded through the loop. Every accepted shape must store (and digest) exactly
what the flat form would, and whatever cannot be stored without loss is refused by name.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from anthropic.types import TextBlock, ToolUseBlock
from openai.types.chat import ChatCompletionMessage

from memory.errors import InvalidInputError
from memory.models import Message, ToolCall, message_digest, parse_messages

ARGS = '{"path": "notes.md", "text": "café"}'


def _openai_reply(content: str | None = None, refusal: str | None = None,
                  calls: bool = True, **extra: Any) -> ChatCompletionMessage:
    tool_calls = [{"id": "call_1", "type": "function",
                   "function": {"name": "write_file", "arguments": ARGS}}] if calls else None
    return ChatCompletionMessage.model_validate({"role": "assistant", "content": content,
                                                 "refusal": refusal, "tool_calls": tool_calls,
                                                 **extra})


def _flat_call() -> dict[str, Any]:
    return {"id": "a1", "role": "assistant", "content": "",
            "tool_calls": [{"id": "call_1", "name": "write_file", "arguments": ARGS}]}


def _same(raw: dict[str, Any], flat: dict[str, Any]) -> Message:
    """`raw` is stored as `flat` would be, to the digest."""
    (stored,) = parse_messages([raw])
    expected = Message.model_validate(flat)
    assert stored == expected
    assert message_digest(stored) == message_digest(expected)
    return stored


def _refused(raw: dict[str, Any], field: str, text: str) -> None:
    with pytest.raises(InvalidInputError) as info:
        parse_messages([raw])
    assert info.value.field == field
    assert text in info.value.problem


def test_the_openai_sdk_dump_with_tool_calls_and_no_content_is_stored_flat() -> None:
    dump = _openai_reply().model_dump()
    assert dump["content"] is None and "refusal" in dump  # the shape the user sent
    _same({**dump, "id": "a1"}, _flat_call())
    _same({**_openai_reply().model_dump(exclude_none=True), "id": "a1"}, _flat_call())
    _same({**_openai_reply().model_dump(mode="json"), "id": "a1"}, _flat_call())


def test_an_assistant_append_then_its_tool_result_is_no_orphan() -> None:
    """The cascade from the user test: the result of an accepted call is accepted."""
    reply, result = parse_messages([
        {**_openai_reply().model_dump(), "id": "a1"},
        {"id": "t1", "role": "tool", "tool_call_id": "call_1",
         "content": [{"type": "text", "text": "written"}]},
    ])
    assert reply.tool_calls[0].id == "call_1" and result.content == "written"


def test_the_openai_sdk_dump_of_a_text_reply_is_stored_flat() -> None:
    reply = _openai_reply(content="Done.", calls=False)
    flat = {"id": "a1", "role": "assistant", "content": "Done."}
    _same({**reply.model_dump(), "id": "a1"}, flat)
    _same({**reply.model_dump(exclude_none=True), "id": "a1"}, flat)
    _same({**reply.model_dump(), "id": "a1", "annotations": []}, flat)


def test_a_refusal_is_what_the_model_said() -> None:
    reply = _openai_reply(refusal="I can't help with that.", calls=False)
    _same({**reply.model_dump(), "id": "a1"},
          {"id": "a1", "role": "assistant", "content": "I can't help with that."})
    _same({"id": "a1", "role": "assistant", "content": "Sure.", "refusal": ""},
          {"id": "a1", "role": "assistant", "content": "Sure."})
    _refused({"id": "a1", "role": "assistant", "content": "Sure.", "refusal": "No."},
             "messages[0].refusal", "content")


def test_annotations_are_kept_in_metadata() -> None:
    note = {"type": "url_citation", "url_citation": {"url": "https://example.org", "title": "E",
                                                     "start_index": 0, "end_index": 4}}
    reply = _openai_reply(content="Done.", calls=False, annotations=[note])
    _same({**reply.model_dump(), "id": "a1", "metadata": {"pinned": True}},
          {"id": "a1", "role": "assistant", "content": "Done.",
           "metadata": {"pinned": True, "annotations": [note]}})
    _refused({"id": "a1", "role": "assistant", "content": "x", "annotations": [note],
              "metadata": {"annotations": "mine"}}, "messages[0].annotations", "metadata")


def test_content_none_without_tool_calls_is_still_empty() -> None:
    _refused({**_openai_reply(calls=False).model_dump(), "id": "a1"},
             "messages[0].content", "must not be empty")


def test_legacy_function_call_and_audio_are_refused_by_name() -> None:
    legacy = _openai_reply(calls=False, function_call={"name": "f", "arguments": "{}"})
    _refused({**legacy.model_dump(), "id": "a1"}, "messages[0].function_call", "tool_calls")
    audio = _openai_reply(calls=False, audio={"id": "au_1", "data": "AAAA", "expires_at": 1,
                                              "transcript": "Hello"})
    _refused({**audio.model_dump(), "id": "a1"}, "messages[0].audio", "transcript")


@pytest.mark.parametrize("arguments", [{"path": "notes.md", "text": "café"}])
def test_arguments_given_as_parsed_json_are_stored_as_json_text(arguments: Any) -> None:
    text = json.dumps(arguments, ensure_ascii=False)
    flat = {**_flat_call(), "tool_calls": [{"id": "call_1", "name": "write_file",
                                            "arguments": text}]}
    openai_call = {"id": "call_1", "type": "function",
                   "function": {"name": "write_file", "arguments": arguments}}
    _same({**flat, "tool_calls": [openai_call]}, flat)
    _same({**flat, "tool_calls": [{"id": "call_1", "name": "write_file",
                                   "arguments": arguments}]}, flat)
    assert ToolCall.model_validate({"id": "c", "name": "f", "arguments": [1, "é"]}).arguments \
        == '[1, "é"]'
    _refused({**flat, "tool_calls": [{"id": "c", "name": "f", "arguments": {"x": float("nan")}}]},
             "messages[0].tool_calls[0].arguments", "JSON")


def test_text_parts_are_joined_and_other_parts_refused() -> None:
    parts = [{"type": "text", "text": "first"}, {"type": "text", "text": "second"}]
    _same({"id": "u1", "role": "user", "content": parts},
          {"id": "u1", "role": "user", "content": "first\nsecond"})
    _same({"id": "t1", "role": "tool", "tool_call_id": "c", "content": parts[:1]},
          {"id": "t1", "role": "tool", "tool_call_id": "c", "content": "first"})
    _same({"id": "a1", "role": "assistant",
           "content": [{"type": "refusal", "refusal": "I can't."}]},
          {"id": "a1", "role": "assistant", "content": "I can't."})
    _refused({"id": "u1", "role": "user", "content": []}, "messages[0].content",
             "must not be empty")
    image = {"type": "image_url", "image_url": {"url": "https://example.org/a.png"}}
    _refused({"id": "u1", "role": "user", "content": [parts[0], image]},
             "messages[0].content[1].type", "image_url")
    _refused({"id": "u1", "role": "user", "content": ["plain"]}, "messages[0].content[0]",
             "type")
    _refused({"id": "u1", "role": "user", "content": [{"type": "text", "text": 3}]},
             "messages[0].content[0].text", "text")


def test_anthropic_blocks_are_stored_flat() -> None:
    text = TextBlock(type="text", text="Writing it.")
    use = ToolUseBlock(type="tool_use", id="toolu_1", name="write_file",
                       input={"path": "notes.md", "text": "café"})
    flat = {"id": "a1", "role": "assistant", "content": "Writing it.",
            "tool_calls": [{"id": "toolu_1", "name": "write_file", "arguments": ARGS}]}
    _same({"id": "a1", "role": "assistant",
           "content": [text.model_dump(), use.model_dump()]}, flat)
    _same({"id": "a1", "role": "assistant", "content": [text, use]}, flat)  # SDK objects
    _same({"id": "a1", "role": "assistant", "content": [use.model_dump(exclude_none=True)]},
          {**flat, "content": ""})
    _same({"id": "a1", "role": "assistant", "content": [text.model_dump()],
           "tool_calls": [use.model_dump()]}, flat)
    direct = {**use.model_dump(), "caller": {"type": "direct"}}  # the model called it itself
    _same({"id": "a1", "role": "assistant", "content": [text, direct]}, flat)
    result = [TextBlock(type="text", text="written").model_dump()]  # a tool_result's content
    _same({"id": "t1", "role": "tool", "tool_call_id": "toolu_1", "content": result},
          {"id": "t1", "role": "tool", "tool_call_id": "toolu_1", "content": "written"})


def test_anthropic_blocks_that_cannot_be_stored_are_refused_by_name() -> None:
    use = ToolUseBlock(type="tool_use", id="toolu_1", name="f", input={}).model_dump()
    _refused({"id": "a1", "role": "assistant", "content": [use], "tool_calls": [use]},
             "messages[0].content[0]", "tool_calls")
    _refused({"id": "u1", "role": "user", "content": [use]},
             "messages[0].content[0].type", "assistant")
    result = {"type": "tool_result", "tool_use_id": "toolu_1", "content": "42"}
    _refused({"id": "u1", "role": "user", "content": [result]},
             "messages[0].content[0].type", "one tool message per result")
    thinking = {"type": "thinking", "thinking": "hmm", "signature": "s"}
    _refused({"id": "u1", "role": "user", "content": [thinking]},  # kept with replies only
             "messages[0].content[0].type", "assistant")
    cited = {"type": "text", "text": "x", "citations": [{"type": "char_location"}]}
    _refused({"id": "a1", "role": "assistant", "content": [cited]},
             "messages[0].content[0].citations", "not stored")
    _refused({"id": "a1", "role": "assistant", "content": [{**use, "name": ""}]},
             "messages[0].content[0].name", "")
    server = {**use, "caller": {"type": "code_execution_20250825", "tool_id": "srv_1"}}
    _refused({"id": "a1", "role": "assistant", "content": [server]},
             "messages[0].content[0].caller", "not stored")


def test_unknown_keys_are_still_refused() -> None:
    _refused({**_openai_reply().model_dump(), "id": "a1", "surprise": 1},
             "messages[0].surprise", "Extra inputs")
    _refused({"id": "u1", "role": "user", "content": [{"type": "text", "text": "x", "z": 1}]},
             "messages[0].content[0].z", "")


def test_responses_api_text_parts_are_text() -> None:
    """ut27: histories of Responses items (input_text, output_text) were refused line by line."""
    asked = {"id": "u1", "role": "user", "content": [{"type": "input_text", "text": "Where?"}]}
    _same(asked, {"id": "u1", "role": "user", "content": "Where?"})
    answer = {"id": "a1", "role": "assistant", "content": [
        {"type": "output_text", "text": "Leeds.", "annotations": [], "logprobs": []}]}
    _same(answer, {"id": "a1", "role": "assistant", "content": "Leeds."})
    cited = {"type": "output_text", "text": "Leeds.", "annotations": [{"type": "url_citation"}]}
    _refused({"id": "a1", "role": "assistant", "content": [cited]},
             "messages[0].content[0].annotations", "not stored")
