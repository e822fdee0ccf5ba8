"""Abstractive summarizers and chat models over the official Anthropic and OpenAI SDKs.

OpenAI-compatible servers (Ollama, vLLM, llama.cpp) work through `base_url`. How the SDK
clients are built and closed: `activities/providers/sdk.py`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Protocol

from pydantic import BaseModel, ConfigDict

from activities.providers.errors import call_provider, empty_reply
from activities.providers.sdk import AnthropicClient, OpenAIClient
from memory.models import ContextWindow, Message
from memory.prompts import SUMMARY_OUTPUT_TOKENS, build_summary_prompt
from memory.render import to_anthropic, to_openai
from memory.summarizer import ExtractiveSummarizer, SummaryResult

__all__ = [
    "AnthropicChat",
    "AnthropicSummarizer",
    "AsyncSummarizer",
    "ChatModel",
    "ChatReply",
    "LocalExtractive",
    "OpenAIChat",
    "OpenAISummarizer",
]


class AsyncSummarizer(Protocol):
    name: str

    async def summarize(self, messages: Sequence[Message], max_tokens: int,
                        focus: str | None = None) -> SummaryResult: ...


class ChatReply(BaseModel):
    model_config = ConfigDict(frozen=True)

    content: str
    model: str
    input_tokens: int = 0
    output_tokens: int = 0


class ChatModel(Protocol):
    name: str

    async def complete(self, window: ContextWindow, max_tokens: int = 1024) -> ChatReply: ...


def _tools_asked(names: Sequence[str]) -> str:
    """generate() offers the model no tools; one that asks for them anyway (an
    OpenAI-compatible server may) gets no made-up text stored in place of its calls."""
    if not names:
        return ""
    return (f"; it asked for tool calls ({', '.join(names)}), which generate() does not run: "
            "use context() and your own agent loop for tools")


class LocalExtractive:
    """The engine's extractive summarizer, run in a thread so the event loop stays free."""

    name = "extractive"

    def __init__(self) -> None:
        self._inner = ExtractiveSummarizer()

    async def summarize(self, messages: Sequence[Message], max_tokens: int,
                        focus: str | None = None) -> SummaryResult:
        return await asyncio.to_thread(self._inner.summarize, messages, max_tokens, focus)


class AnthropicSummarizer(AnthropicClient):
    def __init__(self, api_key: str, model: str, base_url: str | None = None,
                 max_output: int = SUMMARY_OUTPUT_TOKENS) -> None:
        super().__init__(api_key, model, base_url)
        self.max_output = max_output

    async def summarize(self, messages: Sequence[Message], max_tokens: int,
                        focus: str | None = None) -> SummaryResult:
        max_tokens = min(max_tokens, self.max_output)
        prompt = build_summary_prompt(messages, focus, max_tokens)
        response = await call_provider(self.client.messages.create(
            model=self.name, max_tokens=max_tokens, system=prompt.system,
            messages=[{"role": "user", "content": prompt.user}]))
        text = "".join(b.text for b in response.content if b.type == "text")
        if not text.strip():  # the activity falls back to extractive, with this reason
            raise empty_reply("summary", response.stop_reason)
        return SummaryResult(text=text, strategy="abstractive", model=self.name,
                             prompt_version=prompt.version)


class OpenAISummarizer(OpenAIClient):
    def __init__(self, api_key: str, model: str, base_url: str | None = None,
                 max_output: int = SUMMARY_OUTPUT_TOKENS) -> None:
        super().__init__(api_key, model, base_url)
        self.max_output = max_output

    async def summarize(self, messages: Sequence[Message], max_tokens: int,
                        focus: str | None = None) -> SummaryResult:
        max_tokens = min(max_tokens, self.max_output)
        prompt = build_summary_prompt(messages, focus, max_tokens)
        response = await call_provider(self.client.chat.completions.create(
            model=self.name, max_tokens=max_tokens,
            messages=[{"role": "system", "content": prompt.system},
                      {"role": "user", "content": prompt.user}]))
        if not response.choices:  # an OpenAI-compatible server's odd answer: not an outage
            raise empty_reply("summary", None, "; no choices")
        choice = response.choices[0]
        text = choice.message.content or ""
        if not text.strip():  # the activity falls back to extractive, with this reason
            raise empty_reply("summary", choice.finish_reason)
        return SummaryResult(text=text, strategy="abstractive", model=self.name,
                             prompt_version=prompt.version)


class AnthropicChat(AnthropicClient):
    async def complete(self, window: ContextWindow, max_tokens: int = 1024) -> ChatReply:
        system, messages = to_anthropic(window)
        response = await call_provider(self.client.messages.create(
            model=self.name, max_tokens=max_tokens, system=system,  # type: ignore[arg-type]
            messages=messages))  # type: ignore[arg-type]
        text = "".join(b.text for b in response.content if b.type == "text")
        if not text.strip():
            raise empty_reply("reply", response.stop_reason, _tools_asked(
                [b.name for b in response.content if b.type == "tool_use"]))
        return ChatReply(content=text, model=response.model,
                         input_tokens=response.usage.input_tokens,
                         output_tokens=response.usage.output_tokens)


class OpenAIChat(OpenAIClient):
    async def complete(self, window: ContextWindow, max_tokens: int = 1024) -> ChatReply:
        response = await call_provider(self.client.chat.completions.create(
            model=self.name, max_tokens=max_tokens,
            messages=to_openai(window)))  # type: ignore[arg-type]
        usage = response.usage
        if not response.choices:
            raise empty_reply("reply", None, "; no choices")
        choice = response.choices[0]
        if not (choice.message.content or "").strip():
            raise empty_reply("reply", choice.finish_reason, _tools_asked(
                [c.function.name for c in choice.message.tool_calls or ()
                 if c.type == "function"]))
        return ChatReply(content=choice.message.content or "",
                         model=response.model,
                         input_tokens=usage.prompt_tokens if usage else 0,
                         output_tokens=usage.completion_tokens if usage else 0)
