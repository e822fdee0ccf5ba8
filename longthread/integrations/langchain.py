"""LangChain's `BaseChatMessageHistory`, kept in a longthread conversation.

`messages` is the *compacted* window: summaries first (one `SystemMessage`), then the kept
messages. Each message round-trips exactly (its LangChain form rides in the stored message's
metadata), but for one over 64 KB, which comes back as the window holds it (its preview), and a
ToolMessage whose call has left the window, which is not returned; one added without an id
comes back with the id longthread stored it under.
Adding a message again under an id already stored (a retried add that had in fact landed, or a
message read back) skips it when it is the same message and refuses it when it is not. A
message without an id has nothing to be recognized by, so it is stored again: give messages
ids when an add may be retried.
`clear()` empties the window as an undoable ledger record; the archive keeps everything.

Sync and async. The async methods run on the event loop that owns the conversation. The sync
ones (`messages`, `add_messages`, `clear`) are for sync code: they refuse to run inside a
running event loop, where blocking would stall it (the error names the async method to await
instead), and they hand the call to the loop that owns the conversation, which must be running
in another thread. For a purely synchronous program, `LongthreadChatMessageHistory.open(...)`
connects on a private event-loop thread of its own; `close()` stops it.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable, Coroutine, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar, cast

from langchain_core.chat_history import BaseChatMessageHistory
from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
    message_to_dict,
    messages_from_dict,
)
from pydantic import ValidationError
from pydantic_core import to_jsonable_python

from longthread.client import Conversation, Longthread, check_ids
from longthread.integrations._common import (
    JsonObject,
    JsonPath,
    append_batches,
    kept_object,
    next_position,
    read_window,
    stable_id,
    stash,
    summary_text,
)
from longthread.settings import Settings
from memory.errors import InvalidInputError
from memory.models import Message, Role, ToolCall, invalid_input
from memory.render import tool_arguments
from memory.window import by_reference

__all__ = ["MESSAGE_KEY", "LongthreadChatMessageHistory", "from_langchain", "to_langchain"]

MESSAGE_KEY = "langchain_message"
ROLES: dict[str, Role] = {"human": "user", "ai": "assistant", "system": "system",
                          "tool": "tool", "chat": "user", "function": "assistant"}
T = TypeVar("T")


def _text(content: object) -> tuple[str, JsonPath | None]:
    if isinstance(content, str):
        return content, ("data", "content")
    if isinstance(content, list):
        return "\n".join(b if isinstance(b, str) else str(b.get("text", "")) for b in content
                         if isinstance(b, str) or isinstance(b, dict)), None
    return "", None


def from_langchain(message: BaseMessage, message_id: str,
                   created_at: datetime | None = None) -> Message:
    """The longthread message that stores a LangChain message; `to_langchain` inverts it."""
    doc = cast(JsonObject, to_jsonable_python(message_to_dict(message)))
    role = ROLES.get(message.type, "user")
    if message.type == "chat":
        asked = getattr(message, "role", "user")
        role = "assistant" if asked == "assistant" else "system" if asked == "system" else "user"
    text, path = _text(message.content)
    calls = tuple(ToolCall(id=c.get("id") or f"{message_id}-call{n}", name=c["name"],
                           arguments=json.dumps(c["args"], ensure_ascii=False))
                  for n, c in enumerate(getattr(message, "tool_calls", None) or ()))
    # A call whose arguments the model got wrong (not JSON) is a call all the same: its
    # ToolMessage answers it, and without it that answer was refused as an orphan (ut27).
    # Stored with its raw arguments; the message's own form, kept below, restores it as
    # invalid.
    calls += tuple(ToolCall(id=c.get("id") or f"{message_id}-call{len(calls) + n}",
                            name=c.get("name") or "invalid_tool_call",
                            arguments=c.get("args") or "")
                   for n, c in enumerate(getattr(message, "invalid_tool_calls", None) or ()))
    if not text.strip() and not calls:
        text, path = f"[{message.type} message with no text]", None
    return Message(id=message_id, role=role, content=text, created_at=created_at,
                   name=message.name, tool_calls=calls,
                   tool_call_id=getattr(message, "tool_call_id", None) if role == "tool" else None,
                   metadata={MESSAGE_KEY: stash(doc, path)})


def to_langchain(message: Message) -> BaseMessage:
    """The LangChain message a stored message stands for (built plainly if it came from
    elsewhere: the longthread client, the CLI, another adapter)."""
    kept = kept_object(message, MESSAGE_KEY)
    if kept is not None:
        (restored,) = messages_from_dict([kept])
        return restored if restored.id else restored.model_copy(update={"id": message.id})
    common: dict[str, Any] = {"content": message.content, "id": message.id, "name": message.name}
    if message.role == "user":
        return HumanMessage(**common)
    if message.role == "system":
        return SystemMessage(**common)
    if message.role == "tool":
        return ToolMessage(**common, tool_call_id=message.tool_call_id or "")
    return AIMessage(**common, tool_calls=[
        {"name": c.name, "args": tool_arguments(c.arguments), "id": c.id, "type": "tool_call"}
        for c in message.tool_calls])


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


class _LoopThread:
    """A private event loop in a daemon thread, for synchronous programs."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="longthread-loop",
                                       daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


class LongthreadChatMessageHistory(BaseChatMessageHistory):
    """Chat history for LangChain (`RunnableWithMessageHistory` and friends) in longthread."""

    def __init__(self, conversation: Conversation, *,
                 loop: asyncio.AbstractEventLoop | None = None, timeout: float = 300.0) -> None:
        super().__init__()
        self.conversation = conversation
        self.timeout = timeout
        self._loop = loop or _running_loop()
        self._private: _LoopThread | None = None

    @classmethod
    def for_session(cls, lt: Longthread, session: str,
                    tenant: str = "default") -> LongthreadChatMessageHistory:
        """The history of one session of `lt`, made without a round trip, for the plain
        function `RunnableWithMessageHistory` calls with each request's session id (the
        session's workflow starts with its first append). A closure over one history would
        put every user's messages in one conversation."""
        check_ids(tenant, session, opening=True)
        return cls(Conversation(lt, session, tenant))

    @classmethod
    def open(cls, session: str, tenant: str = "default",
             settings: Settings | None = None) -> LongthreadChatMessageHistory:
        """Connect for synchronous code, on a private event-loop thread; `close()` it after."""
        if _running_loop() is not None:
            raise RuntimeError("LongthreadChatMessageHistory.open() is for synchronous code; "
                               "in async code, pass a Conversation: LongthreadChat"
                               "MessageHistory(await lt.conversation(session, tenant=...))")
        private = _LoopThread()

        async def connect() -> Conversation:
            lt = await Longthread.connect(settings)
            try:
                return await lt.conversation(session, tenant=tenant)
            except BaseException:
                await lt.close()
                raise

        try:
            conv = asyncio.run_coroutine_threadsafe(connect(), private.loop).result()
        except BaseException:
            private.stop()
            raise
        history = cls(conv, loop=private.loop)
        history._private = private
        return history

    def close(self) -> None:
        """Close what `open()` opened (the connection and its thread); otherwise nothing."""
        if self._private is not None:
            private, self._private = self._private, None
            asyncio.run_coroutine_threadsafe(self.conversation.lt.close(),
                                             private.loop).result(self.timeout)
            private.stop()

    # -- the bridge between sync callers and the loop that owns the conversation ------------
    def _sync(self, name: str, instead: str, make: Callable[[], Coroutine[Any, Any, T]]) -> T:
        if _running_loop() is not None:
            raise RuntimeError(
                f"LongthreadChatMessageHistory.{name} blocks, and was called inside a running "
                f"event loop: use `await history.{instead}` there instead")
        loop = self._loop
        if loop is None or loop.is_closed() or not loop.is_running():
            raise RuntimeError(
                f"LongthreadChatMessageHistory.{name}: no running event loop owns this "
                "conversation; in synchronous code create the history with "
                "LongthreadChatMessageHistory.open(session, tenant=...)")
        return asyncio.run_coroutine_threadsafe(make(), loop).result(self.timeout)

    async def _async(self, make: Callable[[], Coroutine[Any, Any, T]]) -> T:
        here = asyncio.get_running_loop()
        if self._loop is None or self._loop.is_closed():
            self._loop = here
        if self._loop is here:
            return await make()
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(make(), self._loop))

    # -- the history ------------------------------------------------------------------------
    async def _read(self) -> list[BaseMessage]:
        summaries, stored = await read_window(self.conversation)
        head: list[BaseMessage] = [SystemMessage(summary_text(summaries))] if summaries else []
        return head + [to_langchain(m) for m in stored]

    async def _write(self, messages: Sequence[BaseMessage]) -> None:
        """Append `messages`; one whose id is already stored is sent as its stored copy when it
        is the same message, so a retried add that had landed is a duplicate the store skips.

        Why: each write stamps `created_at`, which counts in the store's duplicate check, so
        a re-sent message would differ from its stored copy by its date alone and be refused.
        The stored copies are read by id (one read, only when some message has an id of its
        own). A message that differs is built with the stored date, so the store still
        refuses it, and only for what truly differs."""
        if not messages:
            return
        start = await next_position(self.conversation)
        own = [m.id for m in messages if m.id]
        stored = {m.id: m for m in await (await self.conversation.lt.store()).get_messages(
            self.conversation.tenant, self.conversation.session, own)} if own else {}
        now = datetime.now(UTC)
        batch: list[Message] = []
        for n, m in enumerate(messages):
            kept = stored.get(m.id) if m.id else None
            if kept is not None:  # as stored, or as the window shows it (a large body's preview)
                same = to_langchain(kept) == m or to_langchain(by_reference(kept)) == m
                batch.append(kept if same else from_langchain(m, kept.id, kept.created_at))
            else:
                try:
                    batch.append(from_langchain(m, m.id or stable_id("lc-", start + n, cast(
                        JsonObject, to_jsonable_python(message_to_dict(m)))), now))
                except (InvalidInputError, ValidationError) as exc:  # named, as the client does
                    error = exc if isinstance(exc, InvalidInputError) else invalid_input(exc)
                    raise InvalidInputError(f"messages[{n}].{error.field}",
                                            error.problem) from None
        await append_batches(self.conversation, batch, "messages")

    async def _clear(self) -> None:
        await self.conversation.clear()

    @property
    def messages(self) -> list[BaseMessage]:  # type: ignore[override]
        """The compacted window (sync; see `aget_messages` for async code)."""
        return self._sync("messages", "aget_messages()", self._read)

    async def aget_messages(self) -> list[BaseMessage]:
        return await self._async(self._read)

    def add_messages(self, messages: Sequence[BaseMessage]) -> None:
        self._sync("add_messages()", "aadd_messages(...)", lambda: self._write(messages))

    async def aadd_messages(self, messages: Sequence[BaseMessage]) -> None:
        await self._async(lambda: self._write(messages))

    def clear(self) -> None:
        self._sync("clear()", "aclear()", self._clear)

    async def aclear(self) -> None:
        await self._async(self._clear)
