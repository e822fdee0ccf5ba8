"""longthread: durable, auditable context compaction for long AI conversations."""

from longthread.client import CompactAttempt, Conversation, Longthread

__all__ = ["CompactAttempt", "Conversation", "Longthread"]
