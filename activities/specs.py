"""Every activity of a conversation, once: its name, result type, timeouts and kind.

The activity implementations take their names from here and the workflow calls through here,
so there is one list, and the workflow still never imports the store or the providers.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Generic, TypeVar

from activities.types import AppendResult, ChatResult, CompactOutcome, EmbedResult
from memory.models import ContextWindow, Cursors

__all__ = ["ALL", "BUILD_CONTEXT", "CHAT_READY", "COMPACT", "COMPLETE_CHAT", "EDIT_WINDOW", "EMBED",
           "OPEN_SESSION", "RESTORE_LEDGER", "STORE_MESSAGES", "UNCOMPACT", "ActivitySpec"]

R = TypeVar("R")


@dataclass(frozen=True)
class ActivitySpec(Generic[R]):
    name: str
    result: type[R]
    timeout: timedelta
    heartbeat: timedelta | None = None
    # Local activities run inside the workflow task that asked for them: an append stores its
    # messages at the cost of one database transaction, not of a second workflow task.
    local: bool = False
    max_attempts: int = 0  # 0: retry until it works (an outage); else fail after this many


HEARTBEAT = timedelta(seconds=15)  # long activities heartbeat every 5 s while they work

OPEN_SESSION = ActivitySpec("open_session", Cursors, timedelta(seconds=10), local=True)
STORE_MESSAGES = ActivitySpec("store_messages", AppendResult, timedelta(seconds=20), local=True)
EMBED = ActivitySpec("embed_messages", EmbedResult, timedelta(minutes=5), HEARTBEAT)
COMPACT = ActivitySpec("compact_session", CompactOutcome, timedelta(minutes=5), HEARTBEAT)
UNCOMPACT = ActivitySpec("uncompact_session", CompactOutcome, timedelta(seconds=30))
EDIT_WINDOW = ActivitySpec("edit_window", CompactOutcome, timedelta(seconds=30))
RESTORE_LEDGER = ActivitySpec("restore_ledger", CompactOutcome, timedelta(minutes=2))
BUILD_CONTEXT = ActivitySpec("build_context", ContextWindow, timedelta(seconds=30))
# A chat reply is wanted now: after 4 failed attempts (about 15 s) generate() fails clearly
# rather than hold the session's updates while the provider is down.
COMPLETE_CHAT = ActivitySpec("complete_chat", ChatResult, timedelta(minutes=2), HEARTBEAT,
                             max_attempts=4)

# generate() asks the worker first, so with no chat model nothing is stored (one local
# activity, no provider call).
CHAT_READY = ActivitySpec("chat_ready", str, timedelta(seconds=10), local=True,
                          max_attempts=1)

ALL: tuple[ActivitySpec[object], ...] = (  # type: ignore[assignment]
    OPEN_SESSION, STORE_MESSAGES, EMBED, COMPACT, UNCOMPACT, EDIT_WINDOW, RESTORE_LEDGER,
    BUILD_CONTEXT, COMPLETE_CHAT, CHAT_READY)
