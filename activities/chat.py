"""Serving a context to the workflow (for generate()) and calling the chat model: the
activities a turn of generate() runs after its user message is stored."""

from __future__ import annotations

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities import specs
from activities.providers.embedders import Embedder
from activities.providers.errors import empty_reply
from activities.providers.llm import ChatModel
from activities.running import heartbeating, refused
from activities.serving import serve_context
from activities.types import (
    MAX_CHAT_WINDOW_BYTES,
    ChatInput,
    ChatResult,
    ServeContextInput,
    SessionRef,
)
from memory.errors import InvalidInputError
from memory.models import ContextWindow
from memory.store.store import Store

__all__ = ["ServingActivities"]


class ServingActivities:
    """Context and chat; `ConversationActivities` sets `store`, `embedder` and `chat`."""

    store: Store
    embedder: Embedder
    chat: ChatModel | None

    @activity.defn(name=specs.BUILD_CONTEXT.name)
    async def build_context(self, input: ServeContextInput) -> ContextWindow:
        try:
            # The window goes back through Temporal (2 MB a payload) and on to the chat
            # activity: serve at most what a payload can carry.
            return await serve_context(self.store, self.embedder, input.tenant, input.session,
                                       input.request, max_bytes=MAX_CHAT_WINDOW_BYTES)
        except InvalidInputError as exc:  # refused for good, naming the field: not retried
            raise refused(exc) from None

    def _chat_model(self) -> ChatModel:
        if self.chat is None:
            raise ApplicationError(
                "no chat model configured: set LONGTHREAD_CHAT_PROVIDER (anthropic or openai), "
                "LONGTHREAD_CHAT_MODEL and the provider's API key", type="NoChatModel",
                non_retryable=True)
        return self.chat

    @activity.defn(name=specs.CHAT_READY.name)
    async def chat_ready(self, input: SessionRef) -> str:
        """generate() asks before it stores the user's turn: a worker with no chat model
        refuses the call with nothing stored, rather than keep a turn no model will answer."""
        return self._chat_model().name

    @activity.defn(name=specs.COMPLETE_CHAT.name)
    async def complete_chat(self, input: ChatInput) -> ChatResult:
        chat = self._chat_model()
        reply = await heartbeating(chat.complete(input.window, input.max_tokens))
        if not reply.content.strip():  # a ChatModel of one's own: the same rule as ours
            raise empty_reply("reply", None)
        return ChatResult(**reply.model_dump())
