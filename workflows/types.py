"""Typed inputs and results of the conversation workflow's handlers."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from memory.models import Message

# A tenant has no '-', so `conversation-{tenant}-{session}` can never name another tenant's
# workflow (tenant "a-b" + session "c" would otherwise collide with tenant "a" + session "b-c").
TENANT_PATTERN = r"^[A-Za-z0-9_.@:]{1,100}$"
SESSION_PATTERN = r"^[A-Za-z0-9_.@:-]{1,200}$"

__all__ = ["AppendInput", "AppendResult", "ConversationInput", "ConversationStats"]


class ConversationInput(BaseModel):
    model_config = ConfigDict(frozen=True)

    tenant: str = Field(pattern=TENANT_PATTERN)
    session: str = Field(pattern=SESSION_PATTERN)


class AppendInput(BaseModel):
    model_config = ConfigDict(frozen=True)

    messages: tuple[Message, ...]


class AppendResult(BaseModel):
    model_config = ConfigDict(frozen=True)

    appended: int
    duplicates: int
    total: int


class ConversationStats(BaseModel):
    model_config = ConfigDict(frozen=True)

    tenant: str
    session: str
    messages: int
