"""One official SDK client per provider object, built one way and closed by `aclose`.

The SDKs' own retries are off (`max_retries=0`): Temporal's retry policy is the only one, so
retries are visible in history and bounded by the activity's policy. A provider that hangs
fails the attempt after PROVIDER_TIMEOUT (the SDKs default to 10 minutes), so an outage
reaches the fallbacks in minutes, not an hour. Left open, a client's HTTP pool warns at
garbage collection, hence `aclose` (the worker calls it on shutdown).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from anthropic import AsyncAnthropic
    from openai import AsyncOpenAI

__all__ = ["PROVIDER_TIMEOUT", "AnthropicClient", "OpenAIClient"]

PROVIDER_TIMEOUT = 60.0


class AnthropicClient:
    def __init__(self, api_key: str, model: str, base_url: str | None = None) -> None:
        from anthropic import AsyncAnthropic  # imported on use: the client stays light

        self.client: AsyncAnthropic = AsyncAnthropic(
            api_key=api_key, base_url=base_url, max_retries=0, timeout=PROVIDER_TIMEOUT)
        self.name = model

    async def aclose(self) -> None:
        await self.client.close()


class OpenAIClient:
    def __init__(self, api_key: str, model: str, base_url: str | None = None) -> None:
        from openai import AsyncOpenAI  # imported on use: the client stays light

        self.client: AsyncOpenAI = AsyncOpenAI(
            api_key=api_key, base_url=base_url, max_retries=0, timeout=PROVIDER_TIMEOUT)
        self.name = model

    async def aclose(self) -> None:
        await self.client.close()
