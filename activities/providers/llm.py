"""Abstractive summarizers and chat models over the official Anthropic and OpenAI SDKs.

OpenAI-compatible servers (Ollama, vLLM, llama.cpp) work through `base_url`. The SDKs' own
retries are off (`max_retries=0`): Temporal's retry policy is the only one, so retries are
visible in history and bounded by the activity's policy.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Protocol

from pydantic import BaseModel, ConfigDict

from activities.providers.errors import call_provider
from memory.models import ContextWindow, Message
from memory.prompts import build_summary_prompt
from memory.render import to_anthropic, to_openai
from memory.summarizer import ExtractiveSummarizer, SummaryResult

# A provider that hangs fails the attempt after this long (the SDKs default to 10 minutes), so
# an outage reaches the summarizer's extractive fallback in minutes, not an hour.
PROVIDER_TIMEOUT = 60.0

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


class LocalExtractive:
    """The engine's extractive summarizer, run in a thread so the event loop stays free."""

    name = "extractive"

    def __init__(self) -> None:
        self._inner = ExtractiveSummarizer()

    async def summarize(self, messages: Sequence[Message], max_tokens: int,
                        focus: str | None = None) -> SummaryResult:
        return await asyncio.to_thread(self._inner.summarize, messages, max_tokens, focus)


class AnthropicSummarizer:
    def __init__(self, api_key: str, model: str, base_url: str | None = None) -> None:
        from anthropic import AsyncAnthropic

        self.client = AsyncAnthropic(api_key=api_key, base_url=base_url, max_retries=0,
                                     timeout=PROVIDER_TIMEOUT)
        self.name = model

    async def aclose(self) -> None:
        """The SDK's HTTP pool; left open it warns at garbage collection."""
        await self.client.close()

    async def summarize(self, messages: Sequence[Message], max_tokens: int,
                        focus: str | None = None) -> SummaryResult:
        prompt = build_summary_prompt(messages, focus, max_tokens)
        response = await call_provider(self.client.messages.create(
            model=self.name, max_tokens=max_tokens, system=prompt.system,
            messages=[{"role": "user", "content": prompt.user}]))
        text = "".join(b.text for b in response.content if b.type == "text")
        return SummaryResult(text=text, strategy="abstractive", model=self.name,
                             prompt_version=prompt.version)


class OpenAISummarizer:
    def __init__(self, api_key: str, model: str, base_url: str | None = None) -> None:
        from openai import AsyncOpenAI

        self.client = AsyncOpenAI(api_key=api_key, base_url=base_url, max_retries=0,
                                     timeout=PROVIDER_TIMEOUT)
        self.name = model

    async def aclose(self) -> None:
        """The SDK's HTTP pool; left open it warns at garbage collection."""
        await self.client.close()

    async def summarize(self, messages: Sequence[Message], max_tokens: int,
                        focus: str | None = None) -> SummaryResult:
        prompt = build_summary_prompt(messages, focus, max_tokens)
        response = await call_provider(self.client.chat.completions.create(
            model=self.name, max_tokens=max_tokens,
            messages=[{"role": "system", "content": prompt.system},
                      {"role": "user", "content": prompt.user}]))
        text = response.choices[0].message.content or ""
        return SummaryResult(text=text, strategy="abstractive", model=self.name,
                             prompt_version=prompt.version)


class AnthropicChat:
    def __init__(self, api_key: str, model: str, base_url: str | None = None) -> None:
        from anthropic import AsyncAnthropic

        self.client = AsyncAnthropic(api_key=api_key, base_url=base_url, max_retries=0,
                                     timeout=PROVIDER_TIMEOUT)
        self.name = model

    async def aclose(self) -> None:
        """The SDK's HTTP pool; left open it warns at garbage collection."""
        await self.client.close()

    async def complete(self, window: ContextWindow, max_tokens: int = 1024) -> ChatReply:
        system, messages = to_anthropic(window)
        response = await call_provider(self.client.messages.create(
            model=self.name, max_tokens=max_tokens, system=system,  # type: ignore[arg-type]
            messages=messages))  # type: ignore[arg-type]
        text = "".join(b.text for b in response.content if b.type == "text")
        return ChatReply(content=text, model=response.model,
                         input_tokens=response.usage.input_tokens,
                         output_tokens=response.usage.output_tokens)


class OpenAIChat:
    def __init__(self, api_key: str, model: str, base_url: str | None = None) -> None:
        from openai import AsyncOpenAI

        self.client = AsyncOpenAI(api_key=api_key, base_url=base_url, max_retries=0,
                                     timeout=PROVIDER_TIMEOUT)
        self.name = model

    async def aclose(self) -> None:
        """The SDK's HTTP pool; left open it warns at garbage collection."""
        await self.client.close()

    async def complete(self, window: ContextWindow, max_tokens: int = 1024) -> ChatReply:
        response = await call_provider(self.client.chat.completions.create(
            model=self.name, max_tokens=max_tokens,
            messages=to_openai(window)))  # type: ignore[arg-type]
        usage = response.usage
        return ChatReply(content=response.choices[0].message.content or "",
                         model=response.model,
                         input_tokens=usage.prompt_tokens if usage else 0,
                         output_tokens=usage.completion_tokens if usage else 0)
