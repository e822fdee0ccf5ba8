"""A context window as the arguments of the Anthropic and OpenAI SDKs.

The wire rules live once, in `memory/render.py`; these helpers give them the SDKs' own types,
so `client.messages.create(model=..., max_tokens=..., **anthropic_args(ctx))`,
`client.chat.completions.create(model=..., messages=openai_messages(ctx))` and
`client.responses.create(model=..., input=responses_input(ctx))` type-check as they are.
For Anthropic, system messages (the system prompt, the summaries, retrieved evidence) go
into `system`, and `cache_control` breakpoints (at most 4) mark the end of the stable prefix:
after the system prompt and after the summaries, which change only when a compaction commits.
Retrieved evidence and recent turns change every call, so they get none.
"""

from __future__ import annotations

from typing import NotRequired, TypedDict, cast

from anthropic.types import MessageParam, TextBlockParam
from openai.types.chat import ChatCompletionMessageParam
from openai.types.responses import ResponseInputItemParam

from memory.models import ContextWindow
from memory.render import MAX_CACHE_BREAKPOINTS, to_anthropic, to_openai, to_responses

__all__ = ["AnthropicArgs", "anthropic_args", "cache_breakpoints", "openai_messages",
           "responses_input"]


class AnthropicArgs(TypedDict):
    """`system` (absent when the window has no system text) and `messages`."""

    system: NotRequired[list[TextBlockParam]]
    messages: list[MessageParam]


def cache_breakpoints(args: AnthropicArgs) -> int:
    """How many `cache_control` breakpoints the request carries (the API allows 4)."""
    blocks: list[object] = list(args.get("system", []))
    for message in args["messages"]:
        content = message["content"]
        blocks += [content] if isinstance(content, str) else list(content)
    return sum(1 for b in blocks if isinstance(b, dict) and "cache_control" in b)


def anthropic_args(window: ContextWindow) -> AnthropicArgs:
    """`system=` and `messages=` for `anthropic.AsyncAnthropic().messages.create`."""
    system, messages = to_anthropic(window)
    args = AnthropicArgs(messages=cast(list[MessageParam], messages))
    if system:
        args["system"] = cast(list[TextBlockParam], system)
    assert cache_breakpoints(args) <= MAX_CACHE_BREAKPOINTS
    return args


def openai_messages(window: ContextWindow) -> list[ChatCompletionMessageParam]:
    """`messages=` for `openai.AsyncOpenAI().chat.completions.create` (system inline)."""
    return cast(list[ChatCompletionMessageParam], to_openai(window))


def responses_input(window: ContextWindow) -> list[ResponseInputItemParam]:
    """`input=` for `openai.AsyncOpenAI().responses.create` (system inline)."""
    return cast(list[ResponseInputItemParam], to_responses(window))
