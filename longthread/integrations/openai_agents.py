"""The OpenAI Agents SDK's `Session` protocol, kept in a longthread conversation.

`Runner.run(agent, text, session=LongthreadSession(conv))` then reads the *compacted* window
before each turn (summaries first, as one system item, then the kept items) and appends what
the turn produced. Every item round-trips exactly: the item rides in the stored message's
metadata, with its text as the message content, so it is searchable and summarizable too. The
exceptions are the window's own: an item over 64 KB comes back as its preview, and an output
whose call has left the window is not returned (`memory.units.tool_units`).

Items map one to one onto messages, which keeps `limit` and `pop_item` simple:
- messages (`user`, `assistant`, `system`, `developer`) become messages of that role
  (`developer` is stored as `system`, and comes back as `developer`);
- a `*_call` item with a `call_id` (function, custom, computer, shell...) becomes an assistant
  message carrying that one tool call, and its `*_call_output` a tool message answering it;
- anything else (reasoning, hosted tool calls, references) is kept whole as an assistant note.

`add_items` is not idempotent: items carry no ids to recognize a retry by, so a call repeated
after it had landed is stored again, like the same items said twice (see its docstring).

`pop_item` takes the newest tool unit out of the window (a tool result never leaves without its
call, or the window would be invalid for a provider) and returns its newest item; system items
are never popped. `clear_session` empties the window. Both are undoable ledger records, and the
archive keeps every item: nothing is lost.

Messages that reached the conversation some other way (the longthread client, the CLI, MCP)
come back as plain Responses items: easy messages, `function_call` and `function_call_output`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import cast

from agents.items import TResponseInputItem
from agents.memory.session_settings import SessionSettings
from pydantic import JsonValue, ValidationError
from pydantic_core import to_jsonable_python

from longthread.client import Conversation, Longthread
from longthread.integrations._common import (
    JsonObject,
    JsonPath,
    append_batches,
    canonical,
    kept_object,
    next_position,
    read_window,
    stable_id,
    stash,
    summary_text,
)
from longthread.sizes import MessageTooLarge
from memory.errors import InvalidInputError
from memory.models import Message, Role, ToolCall, invalid_input
from memory.units import JOINS_NEXT

__all__ = ["ITEM_KEY", "LongthreadSession", "item_to_message", "message_to_items"]

ITEM_KEY = "openai_agents_item"
ROLES: dict[str, Role] = {"user": "user", "assistant": "assistant", "system": "system",
                          "developer": "system"}


def _text_of(content: JsonValue, at: JsonPath) -> tuple[str, JsonPath | None]:
    """A message's text, and where it sits when it is one string in one place."""
    if isinstance(content, str):
        return content, at
    if isinstance(content, list):
        texts = [t for p in content if isinstance(p, dict) and isinstance(t := p.get("text"), str)]
        if len(texts) == 1 and len(content) == 1:
            return texts[0], (*at, 0, "text")
        return "\n".join(texts), None
    return "", None


def _note(item: JsonObject) -> str:
    """Searchable text for an item that is no conversation message (reasoning and the like)."""
    texts: list[str] = []
    for key in ("summary", "content", "action", "query", "queries", "result", "code"):
        value = item.get(key)
        if isinstance(value, str):
            texts.append(value)
        elif isinstance(value, list):
            texts += [t for p in value if isinstance(p, dict) and
                      isinstance(t := p.get("text"), str)]
    return " ".join([f"[{item.get('type') or 'item'}]", *texts])


def item_to_message(item: JsonObject, message_id: str,
                    created_at: datetime | None = None) -> Message:
    """The message that stores `item`; `message_to_items` gives the item back, exactly."""
    kind, role, call_id = item.get("type"), item.get("role"), item.get("call_id")
    fields: dict[str, object] = {"id": message_id, "created_at": created_at}
    if kind in (None, "message") and isinstance(role, str):
        if role not in ROLES:
            raise InvalidInputError("role", f"{role!r} is not one of {', '.join(ROLES)}")
        text, path = _text_of(item.get("content"), ("content",))
        fields["role"] = ROLES[role]
    elif isinstance(kind, str) and isinstance(call_id, str) and kind.endswith("_output"):
        text, path = _text_of(item.get("output"), ("output",))
        fields.update(role="tool", tool_call_id=call_id)
    elif isinstance(kind, str) and isinstance(call_id, str) and kind.endswith("_call"):
        name, args = item.get("name"), item.get("arguments", item.get("input"))
        text, path = "", None
        fields.update(role="assistant", tool_calls=(ToolCall(
            id=call_id, name=name if isinstance(name, str) and name else kind,
            arguments=args if isinstance(args, str) else canonical(
                item.get("action") or args or {})),))
    else:
        text, path = _note(item), None
        fields["role"] = "assistant"
    if not text.strip() and "tool_calls" not in fields:
        text, path = f"[{kind or role} with no text]", None
    return Message.model_validate({**fields, "content": text,
                                   "metadata": {ITEM_KEY: stash(item, path)}})


def message_to_items(message: Message) -> list[TResponseInputItem]:
    """The items a stored message stands for: the item it was made from, or (for a message
    from elsewhere) the Responses items a model would have been given for it."""
    kept = kept_object(message, ITEM_KEY)
    if kept is not None:
        return [cast(TResponseInputItem, kept)]
    items: list[JsonObject] = []
    if message.role == "tool":
        items.append({"type": "function_call_output", "call_id": message.tool_call_id,
                      "output": message.content})
    elif message.content.strip() or not message.tool_calls:
        items.append({"role": message.role, "content": message.content})
    for call in message.tool_calls:
        items.append({"type": "function_call", "call_id": call.id, "name": call.name,
                      "arguments": call.arguments})
    return [cast(TResponseInputItem, i) for i in items]


def _joins_next(item: JsonObject, following: JsonValue) -> bool:
    """Whether `item` must stay in the window with the item after it: a reasoning item with
    what the model did next, and a call with the next call of the same response. The
    Responses API refuses a `function_call` sent without the `reasoning` item before it
    (ut27: a compaction archived the reasoning and kept the call)."""
    kind = item.get("type")
    if kind == "reasoning":
        return True
    # The model's own text before its calls (a preamble) stands between reasoning and call.
    said = kind in (None, "message") and item.get("role") == "assistant"
    return ((said or (isinstance(kind, str) and kind.endswith("_call")))
            and isinstance(following, str) and following.endswith("_call"))


def _item_error(n: int, item: JsonObject, error: InvalidInputError) -> InvalidInputError:
    """A stored message's refusal, named by the item's own field: an output's text is its
    `output`, a call's id its `call_id`; an item stored as a note (reasoning) has no one field
    its text came from, so the item alone is named."""
    kind = str(item.get("type") or "message")
    field = error.field
    if field == "content" and kind.endswith("_output"):
        field = "output"
    elif field.startswith("metadata") or (field == "content" and kind != "message"):
        field = ""  # the item kept whole (its text is not one string at one place)
    elif field in ("tool_call_id", "id") or field.endswith("].id"):
        field = "call_id"
    elif field.startswith("tool_calls"):
        field = field.split(".", 1)[1] if "." in field else ""
    if field == "arguments":  # stored from `arguments`, a custom call's `input`, or `action`
        field = next((k for k in ("arguments", "input", "action") if k in item), "")
    return InvalidInputError(f"items[{n}]" + (f".{field}" if field else ""), error.problem)


def _plain(item: TResponseInputItem, index: int) -> JsonObject:
    value = to_jsonable_python(item)
    if not isinstance(value, dict):
        raise InvalidInputError(f"items[{index}]", "must be a Responses input item (a dict)")
    return cast(JsonObject, value)


class LongthreadSession:
    """An Agents SDK session whose history is a durable, compacted longthread conversation.

    Use `await LongthreadSession.open(lt, "ticket-4711", tenant="acme")`, or wrap a
    `Conversation` you already hold. `session_id` is the longthread session id.
    """

    session_settings: SessionSettings | None = None

    def __init__(self, conversation: Conversation,
                 session_settings: SessionSettings | None = None) -> None:
        self.conversation = conversation
        self.session_id: str = conversation.session
        self.session_settings = session_settings

    @classmethod
    async def open(cls, lt: Longthread, session_id: str, tenant: str = "default",
                   session_settings: SessionSettings | None = None) -> LongthreadSession:
        return cls(await lt.conversation(session_id, tenant=tenant), session_settings)

    async def get_items(self, limit: int | None = None) -> list[TResponseInputItem]:
        """The compacted window as input items, oldest first; with `limit`, the newest ones."""
        summaries, messages = await read_window(self.conversation)
        items: list[TResponseInputItem] = []
        if summaries:
            items.append(cast(TResponseInputItem,
                              {"role": "system", "content": summary_text(summaries)}))
        for message in messages:
            items += message_to_items(message)
        if limit is not None:
            return items[-limit:] if limit > 0 else []
        return items

    async def add_items(self, items: list[TResponseInputItem]) -> None:
        """Store a turn's items, in order, one message each.

        Items carry no ids to tell them by (user items have none; with a Chat Completions
        model every output item has the same placeholder id), so each is named by the archive
        position the call starts at and the item itself. That keeps equal items apart: the
        same items added twice, in one call or two, are stored twice, as they were said, and
        overlapping calls with different items never take each other's ids.

        It does not make a retry safe. A call repeated after the first had landed (a timeout
        that was no failure) starts at a later position, so it is stored again: nothing tells
        it from the same items said again. A turn too large for one Temporal payload goes in
        several appends, and one that fails part way keeps what went before. So after an
        error, read `get_items()` before adding again. Overlapping calls start at the same
        position, so an equal item at the same place in both gets the same id: one call is
        stored, the other refused with `InvalidInputError` (nothing is stored twice)."""
        if not items:
            return
        start = await next_position(self.conversation)
        now = datetime.now(UTC)
        messages = []
        plains = [_plain(item, n) for n, item in enumerate(items)]
        for n, plain in enumerate(plains):
            try:
                message = item_to_message(plain, stable_id("item-", start + n, plain), now)
            except (InvalidInputError, ValidationError) as exc:  # name the item, as `_plain`
                error = exc if isinstance(exc, InvalidInputError) else invalid_input(exc)
                raise _item_error(n, plain, error) from None
            following = plains[n + 1].get("type") if n + 1 < len(plains) else None
            if _joins_next(plain, following):
                message = message.model_copy(update={
                    "metadata": {**message.metadata, JOINS_NEXT: True}})
            messages.append(message)
        try:
            await append_batches(self.conversation, messages, "items")
        except MessageTooLarge as error:  # refused before any of the turn was sent
            raise _item_error(error.index, plains[error.index],
                              InvalidInputError(error.part, error.problem)) from None

    async def pop_item(self) -> TResponseInputItem | None:
        """Take the newest tool unit out of the window (undoable) and return its newest item."""
        removed = await self.conversation.pop()
        if not removed:
            return None
        return message_to_items(removed[-1])[-1]

    async def clear_session(self) -> None:
        """Empty the window, as an undoable ledger record; the archive keeps every item."""
        await self.conversation.clear()
