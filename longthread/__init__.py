"""longthread: durable, auditable context compaction for long AI conversations."""

from longthread.client import Conversation, Longthread

__all__ = ["Conversation", "Longthread"]
