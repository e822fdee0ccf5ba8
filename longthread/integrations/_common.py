"""What the framework adapters share: stable ids, exact round-trips, and the window as stored.

A framework hands us its own objects (an Agents SDK input item, a LangChain message) and wants
the very same objects back. Longthread stores a `Message` whose `content` is the object's text,
so it can be searched, summarized and counted; the rest of the object rides along in
`metadata`, with the text cut out (it is already the content) and a path saying where to put it
back. Rebuilding is then exact, and large bodies are not stored twice.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Sequence

from pydantic import JsonValue

from longthread.conversation import Conversation
from longthread.sizes import MAX_BATCH_BYTES, check_message_sizes, message_bytes, split_by_size
from memory.models import Message, Summary
from memory.packing import fenced_summary
from memory.units import tool_units

__all__ = ["JsonObject", "JsonPath", "append_batches", "canonical", "kept_object",
           "next_position", "read_window", "stable_id", "stash", "summary_text", "unstash"]

JsonPath = tuple[str | int, ...]
JsonObject = dict[str, JsonValue]


def canonical(value: JsonValue) -> str:
    """One spelling per JSON value, so equal objects hash equally whatever their key order."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def stable_id(prefix: str, position: int, payload: JsonValue) -> str:
    """An id for an object that has none, which two equal objects at different positions
    never share. It recognizes no retry: one made after the first call landed starts at a
    later position and so makes new ids (see `LongthreadSession.add_items`)."""
    # surrogatepass: a lone surrogate (not storable) must reach the store's own check, which
    # names the field, instead of failing here as a bare UnicodeEncodeError.
    text = f"{position}\n{canonical(payload)}"
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:12]
    return f"{prefix}{position}-{digest}"


async def next_position(conv: Conversation) -> int:
    """How many messages the session has archived: appends are stored before they return, so
    this is where the next batch starts. Read from the store, which needs no running worker."""
    return await (await conv.lt.store()).count(conv.tenant, conv.session)


def _parent(obj: JsonValue, path: JsonPath) -> JsonObject | list[JsonValue]:
    for step in path[:-1]:
        if isinstance(obj, dict) and isinstance(step, str):
            obj = obj[step]
        elif isinstance(obj, list) and isinstance(step, int):
            obj = obj[step]
        else:
            raise KeyError(step)
    if not isinstance(obj, dict | list):
        raise KeyError(path[-1])
    return obj


def _put(obj: JsonValue, path: JsonPath, value: JsonValue) -> None:
    parent, last = _parent(obj, path), path[-1]
    if isinstance(parent, dict) and isinstance(last, str):
        parent[last] = value
    elif isinstance(parent, list) and isinstance(last, int):
        parent[last] = value
    else:
        raise KeyError(last)


def stash(obj: JsonObject, path: JsonPath | None) -> JsonObject:
    """Metadata that rebuilds `obj`: the object without the text at `path` (the message's
    content holds it), or the whole object when its text is not one string at one place."""
    if path is None:
        return {"object": obj}
    template = copy.deepcopy(obj)
    _put(template, path, None)
    return {"object": template, "text_at": list(path)}


def unstash(stashed: JsonValue, content: str) -> JsonObject | None:
    """The object `stash` kept, with `content` back in its place; None if nothing was kept."""
    if not isinstance(stashed, dict) or not isinstance(stashed.get("object"), dict):
        return None
    obj = copy.deepcopy(stashed["object"])
    assert isinstance(obj, dict)
    path = stashed.get("text_at")
    if isinstance(path, list) and path and all(isinstance(p, str | int) for p in path):
        _put(obj, tuple(p for p in path if isinstance(p, str | int)), content)
    return obj


async def read_window(conv: Conversation) -> tuple[tuple[Summary, ...], list[Message]]:
    """The current window in one read (summaries and messages of the same version), as the
    policy counts it, so a framework's history stays within the context window: a body over
    64 KB stands as its preview (`conv.messages([id])` gives it whole), and a tool result
    whose call is no longer in the window is left out, as `context()` leaves it out (ut27:
    six 400 KB outputs in full made a 3,300-token window 680,000 tokens, and a result that
    arrived after its call was compacted began the history alone, which providers refuse)."""
    store = await conv.lt.store()
    loaded = await store.load_window(conv.tenant, conv.session)
    window = loaded.state.messages
    kept = {m.id for unit in tool_units([m for m in window if m.role != "system"]) for m in unit}
    return loaded.state.summaries, [m for m in window if m.role == "system" or m.id in kept]


def kept_object(message: Message, key: str) -> JsonObject | None:
    """The framework object `message` was stored from (see `stash`), or None to build one
    plainly from the message: also for a large body standing as its preview whose object was
    kept whole (its text was not one string at one place), which would bring the whole body
    back into the window."""
    stashed = message.metadata.get(key)
    if ("body_ref" in message.metadata and isinstance(stashed, dict)
            and "text_at" not in stashed):
        return None
    return unstash(stashed, message.content)


def summary_text(summaries: Sequence[Summary]) -> str:
    """The summaries that stand for compacted turns, as the current assembly shows them: fenced
    as quoted data, so text inside a summary is never read as an instruction, and long ids (a
    UUID) by their tails, so a framework's history spends its tokens on sentences."""
    return "\n\n".join(fenced_summary(s, short_ids=True) for s in summaries)


async def append_batches(conv: Conversation, messages: Sequence[Message],
                         field: str = "messages") -> None:
    """Append in as few calls as Temporal's payload cap allows: a framework may hand over a
    turn with large tool outputs that one update could not carry. A message no call could
    carry is refused, as `field[i]`, before any of the turn is sent (ut27: a call went in,
    its 1.7 MB result was refused, and the error named the wrong index)."""
    weights = [message_bytes(m) for m in messages]
    check_message_sizes(messages, weights, field)
    for start, stop in split_by_size(weights, len(weights), MAX_BATCH_BYTES):
        await conv.append_many(list(messages[start:stop]))
