"""Choose providers from settings and build the activities once per worker process."""

from __future__ import annotations

from psycopg import AsyncConnection
from psycopg.rows import DictRow
from psycopg_pool import AsyncConnectionPool

from activities.conversation import ConversationActivities
from activities.providers.choose import choose_embedder
from activities.providers.embedders import (
    Embedder,
)
from activities.providers.llm import (
    AnthropicChat,
    AnthropicSummarizer,
    AsyncSummarizer,
    ChatModel,
    LocalExtractive,
    OpenAIChat,
    OpenAISummarizer,
)
from memory.errors import InvalidInputError
from memory.store.store import Store
from worker.settings import Settings

__all__ = ["build_activities", "make_chat", "make_embedder", "make_summarizer"]


def _key(settings: Settings, provider: str) -> str:
    secret = settings.anthropic_api_key if provider == "anthropic" else settings.openai_api_key
    if secret is None and not (provider == "openai" and settings.openai_base_url):
        raise InvalidInputError(f"LONGTHREAD_{provider.upper()}_API_KEY",
                                f"is required when {provider} is configured")
    return secret.get_secret_value() if secret else "not-needed"


def make_embedder(settings: Settings) -> Embedder:
    """The same choice the client makes for query embeddings (activities/providers/choose)."""
    if settings.embedder == "openai":
        _key(settings, "openai")  # refuse a missing key with the setting's name
    key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else None
    return choose_embedder(settings.embedder, settings.dimensions, key,
                           settings.openai_embedding_model, settings.openai_base_url)


def make_summarizer(settings: Settings) -> AsyncSummarizer:
    if settings.summarizer == "extractive":
        return LocalExtractive()
    model = settings.summary_model or settings.chat_model
    if not model:
        raise InvalidInputError("LONGTHREAD_SUMMARY_MODEL",
                                f"is required when LONGTHREAD_SUMMARIZER={settings.summarizer}")
    if settings.summarizer == "anthropic":
        return AnthropicSummarizer(_key(settings, "anthropic"), model,
                                   settings.anthropic_base_url,
                                   settings.summary_max_output_tokens)
    return OpenAISummarizer(_key(settings, "openai"), model, settings.openai_base_url,
                            settings.summary_max_output_tokens)


def make_chat(settings: Settings) -> ChatModel | None:
    if settings.chat_provider == "none":
        return None
    if not settings.chat_model:
        raise InvalidInputError(
            "LONGTHREAD_CHAT_MODEL",
            f"is required when LONGTHREAD_CHAT_PROVIDER={settings.chat_provider}")
    if settings.chat_provider == "anthropic":
        return AnthropicChat(_key(settings, "anthropic"), settings.chat_model,
                             settings.anthropic_base_url)
    return OpenAIChat(_key(settings, "openai"), settings.chat_model, settings.openai_base_url)


def build_activities(
    settings: Settings, pool: AsyncConnectionPool[AsyncConnection[DictRow]]
) -> ConversationActivities:
    return ConversationActivities(
        Store(pool), make_embedder(settings), make_summarizer(settings), make_chat(settings),
        max_summarizer_failures=settings.summarizer_max_failures)
