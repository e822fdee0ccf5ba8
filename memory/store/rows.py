"""Rows of the messages table back into frozen models."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel

from memory.models import Message, ScoredMessage, ToolCall

__all__ = ["MESSAGE_COLUMNS", "built", "message_columns", "row_to_message", "row_to_scored"]

M = TypeVar("M", bound=BaseModel)

_set = object.__setattr__
_new = object.__new__


def message_columns(table: str = "") -> str:
    """What a Message is built from, and its seq: never `SELECT *`, which would also carry the
    embedding (384 floats parsed into numpy per row) and the tsvector, both unused here. Empty
    tool calls and metadata (most rows) come back as NULL, so they cost no JSON parsing."""
    t = f"{table}." if table else ""
    return (f"{t}id, {t}seq, {t}role, {t}content, {t}name, {t}created_at, {t}tool_call_id,"
            f" nullif({t}tool_calls, '[]') AS tool_calls, nullif({t}metadata, '{{}}') AS metadata")


MESSAGE_COLUMNS = message_columns()


def _plain(cls: type[BaseModel]) -> frozenset[str]:
    """The fields of a model `built` may fill: one with no private attributes, no
    model_post_init and no extra fields, whose instances are nothing but their __dict__ and
    the three slots pydantic keeps beside it. Refused at import for any other model, so a
    change to the models cannot make `built` produce a different object than model_construct."""
    if cls.__pydantic_post_init__ or cls.__private_attributes__ or cls.__pydantic_root_model__ \
            or cls.model_config.get("extra") == "allow":
        raise TypeError(f"{cls.__name__} is not a plain model: build it with model_construct")
    return frozenset(cls.model_fields)


_FIELDS: dict[type[BaseModel], frozenset[str]] = {
    cls: _plain(cls) for cls in (Message, ScoredMessage)}


# BaseModel's three slots, set through their descriptors: one C call each, where
# object.__setattr__ first looks the name up on the class.
_SET_FIELDS_SET = BaseModel.__dict__["__pydantic_fields_set__"].__set__
_SET_EXTRA = BaseModel.__dict__["__pydantic_extra__"].__set__
_SET_PRIVATE = BaseModel.__dict__["__pydantic_private__"].__set__


def built(cls: type[M], values: dict[str, Any]) -> M:
    """`cls.model_construct(**values)` for a plain model given every field, about three times
    faster: model_construct walks the fields for defaults and aliases on every call, which was
    most of the cost of the ~600 candidate rows a context() reads. The result compares equal
    to model_construct's and is the same to pydantic (same __dict__, fields set, no extra, no
    private state); tests/store/test_rows.py checks both. Unvalidated: for stored rows only."""
    model = _new(cls)
    _set(model, "__dict__", values)
    _SET_FIELDS_SET(model, set(_FIELDS[cls]))
    _SET_EXTRA(model, None)
    _SET_PRIVATE(model, None)
    return model


def row_to_message(row: dict[str, Any]) -> Message:
    """A stored row as a Message, without validating it again: every row was validated (as a
    Message) before it was inserted, and the archive never changes it."""
    calls, metadata = row["tool_calls"], row["metadata"]
    return built(Message, {
        "id": row["id"], "role": row["role"], "content": row["content"],
        "created_at": row["created_at"], "name": row["name"],
        "tool_call_id": row["tool_call_id"],
        # Most rows have neither (NULL: `message_columns`): no generator for them.
        "tool_calls": tuple(ToolCall.model_construct(**c) for c in calls) if calls else (),
        "metadata": metadata if metadata is not None else {}})


def row_to_scored(row: dict[str, Any], score: float, session: str) -> ScoredMessage:
    """A fetched search row as a retrieval candidate, built as `row_to_message` is."""
    return built(ScoredMessage, {"message": row_to_message(row), "score": score,
                                 "session": session, "seq": row["seq"]})
