"""Messages and tool calls as the provider SDKs hand them back, turned into the flat form
`memory.messages` stores: OpenAI's `ChatCompletionMessage` dumps, Anthropic's content blocks,
arguments already parsed. Nothing that carries data is dropped: what the flat form cannot hold
is refused by name. Pure functions, run by the models' before-validators."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from pydantic import BaseModel, ValidationError

from memory.checks import invalid_input
from memory.errors import InvalidInputError
from memory.thinking import THINKING, THINKING_TYPES, check_block

if TYPE_CHECKING:
    from memory.messages import ToolCall

__all__ = ["flat_call", "flat_message"]


def _call(part: dict[str, object]) -> ToolCall:
    from memory.messages import ToolCall  # the model module imports this one

    return ToolCall.model_validate(part)


# Keys the OpenAI SDK sets on every assistant message (`ChatCompletionMessage.model_dump()`),
# None or empty when the reply does not use them.
_OPENAI_MESSAGE_EXTRAS = ("refusal", "annotations", "audio", "function_call")
# Keys of Anthropic's text and tool_use blocks that are None (or absent) unless a feature is on.
# Parts whose text is all they hold: Chat Completions' and Anthropic's, and the Responses
# API's (ut27: a migrated history of Responses items was refused line by line).
TEXT_PARTS = ("text", "refusal", "input_text", "output_text")
_TEXT_PART_EXTRAS = ("citations", "cache_control", "annotations", "logprobs")
_TOOL_USE_EXTRAS = ("caller", "toolset_name", "cache_control")


def _unused(value: object) -> bool:
    return value is None or (isinstance(value, str | list | tuple | dict) and not value)


def _drop_unused(part: dict[str, object], keys: Iterable[str], where: str) -> None:
    """Drop provider keys that carry nothing; refuse, by name, those that carry something, since
    the flat form has nowhere to keep them and dropping them would lose data silently."""
    for key in keys:
        if key not in part:
            continue
        if not _unused(part[key]):
            raise InvalidInputError(f"{where}{key}", "is not stored (only the text and tool "
                                    "calls are): send the part without it, or keep it in "
                                    "metadata")
        del part[key]


def _json_text(field: str, value: object) -> str:
    """Already-parsed JSON as the model would have written it; NaN is not JSON, so refused."""
    try:
        return json.dumps(value, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(field, f"is not JSON ({exc})") from None


def _part_text(part: dict[str, object], where: str) -> str:
    """The text of an OpenAI text or refusal part, of a Responses API input_text or
    output_text part, or of an Anthropic text block."""
    kind = str(part["type"])  # {"type": "text", "text": ...}, {"type": "refusal", "refusal": ...}
    key = "refusal" if kind == "refusal" else "text"
    text = part.get(key)
    if not isinstance(text, str):
        raise InvalidInputError(f"{where}.{key}", f"must be text, not {type(text).__name__}")
    rest = {k: v for k, v in part.items() if k not in ("type", key)}
    _drop_unused(rest, _TEXT_PART_EXTRAS, f"{where}.")
    if rest:
        raise InvalidInputError(f"{where}.{sorted(rest)[0]}", f"unexpected in a {kind} part")
    return text


class _Parts:
    """Content given as a list of parts, read: the text parts joined by newlines (one part
    keeps its text exactly; a newline keeps words of adjacent parts apart), Anthropic's
    tool_use blocks as tool calls, each with its index, and its thinking blocks exactly, for
    the message's metadata (`memory.thinking`). Any other part (an image, a file, a
    tool_result) has no place in the flat form, so it is refused by name, never dropped. The
    flat form puts text before calls; Anthropic writes them in that order, after thinking."""

    def __init__(self, parts: Sequence[object], role: object) -> None:
        self.texts: list[str] = []
        self.calls: list[tuple[int, ToolCall]] = []
        self.thinking: list[dict[str, object]] = []
        for index, raw in enumerate(parts):
            self._read(index, raw, role)

    def _read(self, index: int, raw: object, role: object) -> None:
        part = raw.model_dump() if isinstance(raw, BaseModel) else raw
        where = f"content[{index}]"
        if not isinstance(part, dict) or not isinstance(part.get("type"), str):
            raise InvalidInputError(where, "must be a part with a type, such as "
                                    "{'type': 'text', 'text': ...}")
        kind = part["type"]
        if kind in TEXT_PARTS:
            self.texts.append(_part_text(part, where))
        elif kind in ("tool_use", *THINKING_TYPES) and role != "assistant":
            raise InvalidInputError(f"{where}.type",
                                    f"{kind!r} blocks belong to assistant messages")
        elif kind == "tool_use":
            try:
                self.calls.append((index, _call(part)))
            except ValidationError as exc:
                raise invalid_input(exc, prefix=where) from None
        elif kind in THINKING_TYPES:
            self.thinking.append(dict(check_block(where, part)))
        elif kind == "tool_result":
            raise InvalidInputError(f"{where}.type", "'tool_result' blocks (Anthropic's user "
                                    "message of results) are stored as one tool message per "
                                    "result: send {'role': 'tool', 'tool_call_id': "
                                    "<tool_use_id>, 'content': <its content>} for each")
        else:
            raise InvalidInputError(f"{where}.type", f"{kind!r} parts are not stored (only "
                                    f"{', '.join(TEXT_PARTS)} parts, and tool_use and thinking "
                                    "blocks on assistant messages): send their text, or keep "
                                    "them elsewhere and append a reference")


def flat_call(value: object) -> object:
    """Take a call as the providers' APIs return it, stored in the flat form: OpenAI's
    `{"id", "type": "function", "function": {"name", "arguments"}}` and Anthropic's
    `{"type": "tool_use", "id", "name", "input": {...}}` (its input kept as JSON text), as
    dicts or as the SDKs' objects. Arguments already parsed (a dict or list) are stored as
    the JSON text a model would have written, so both forms store and digest alike."""
    if isinstance(value, BaseModel):  # an SDK object (the model itself never comes here)
        value = value.model_dump()
    if not isinstance(value, dict):
        return value
    if isinstance(value.get("function"), dict):
        if value.get("type", "function") != "function":
            raise InvalidInputError("type", f"{value['type']!r} is not 'function'")
        function = value["function"]
        unknown = set(value) - {"id", "type", "function"}
        if unknown:
            raise InvalidInputError(sorted(unknown)[0], "unexpected beside 'function'")
        flat: dict[str, object] = {"id": value.get("id"), "name": function.get("name"),
                                   "arguments": function.get("arguments", "{}")}
    elif value.get("type") == "tool_use":
        flat = {k: v for k, v in value.items() if k not in ("type", "input")}
        if flat.get("caller") == {"type": "direct"}:  # the model called it itself: what
            del flat["caller"]  # every stored call means, so it carries nothing here
        _drop_unused(flat, _TOOL_USE_EXTRAS, "")
        flat["arguments"] = _json_text("input", value.get("input", {}))
    elif value.get("type") == "custom" and "custom" in value:
        raise InvalidInputError("type", "'custom' tool calls (free-text input) are not "
                                "supported; only function calls")
    else:
        flat = dict(value)
    if isinstance(flat.get("arguments"), dict | list):
        flat["arguments"] = _json_text("arguments", flat["arguments"])
    return flat


def flat_message(value: object) -> object:
    """Take a message as the provider SDKs hand it back and store the flat form, so an
    agent loop can append `ChatCompletionMessage.model_dump()` (plus its own id) or
    Anthropic content blocks as they are, and store and digest exactly what the flat form
    would. A refused append would leave the next tool result an orphan, failing the loop.

    Nothing is dropped that carries data: an empty `refusal`, `annotations`, `audio` or
    `function_call` is dropped; a refusal is what the model said, so it becomes the
    content; annotations (web search citations) are kept in `metadata`, as the user would
    expect their reply stored; audio (megabytes of base64 that OpenAI expires) and the
    legacy function_call (no id for a tool result to answer) are refused by name."""
    if isinstance(value, BaseModel):  # an SDK object (the model itself never comes here)
        value = value.model_dump()
    if not isinstance(value, dict):
        return value
    data = dict(value)
    for key in ("content", "tool_calls", *_OPENAI_MESSAGE_EXTRAS):
        if key in data and _unused(data[key]):
            del data[key]  # None or empty: the flat form's default says the same
    if isinstance(data.get("content"), list | tuple):
        parts = _Parts(data["content"], data.get("role"))
        data["content"], calls = "\n".join(parts.texts), parts.calls
        if calls and data.get("tool_calls"):
            raise InvalidInputError(f"content[{calls[0][0]}]", "tool_use blocks and "
                                    "tool_calls both given: send each call once")
        if calls:
            data["tool_calls"] = [call for _, call in calls]
        if parts.thinking:
            _into_metadata(data, THINKING, parts.thinking, f"metadata.{THINKING}")
    if "function_call" in data:
        raise InvalidInputError("function_call", "the legacy function_call form is not "
                                "supported (its result has no call id to answer); send "
                                "tool_calls")
    if "audio" in data:
        raise InvalidInputError("audio", "audio replies are not stored: send the reply's "
                                "text (audio.transcript) as content and keep the audio "
                                "elsewhere")
    if "refusal" in data:
        refusal, content = data.pop("refusal"), data.get("content", "")
        if not isinstance(refusal, str):
            raise InvalidInputError("refusal", f"must be text, not {type(refusal).__name__}")
        if isinstance(content, str) and not content.strip():
            data["content"] = refusal
        elif content != refusal:
            raise InvalidInputError("refusal", "content already carries text: a reply is "
                                    "either content or a refusal, send one of them")
    if "annotations" in data:
        _into_metadata(data, "annotations", data.pop("annotations"), "annotations")
    return data


def _into_metadata(data: dict[str, object], key: str, value: object, field: str) -> None:
    """Keep what the provider returned beside the text in the message's metadata, under
    `key`; metadata already holding something else there is refused (as `field`), never
    overwritten."""
    metadata = data.get("metadata", {})
    if not isinstance(metadata, dict):
        raise InvalidInputError("metadata", f"must be an object, not {type(metadata).__name__}")
    if metadata.get(key, value) != value:
        raise InvalidInputError(field, f"metadata already has other {key!r}: send one of them")
    data["metadata"] = {**metadata, key: value}
