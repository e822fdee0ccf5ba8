"""Activity calls as the workflow makes them: names, timeouts and retry policies in one place.

Activities are called by name so the workflow never imports the store or the providers.
Retries are unbounded with capped backoff for outages (a database gone for a minute, a
provider returning 429/5xx); non-retryable errors (a 400, bad input) fail fast.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.types import (
        ArchiveInput,
        ArchiveResult,
        ChatInput,
        ChatResult,
        CheckpointInput,
        LoadCheckpointInput,
        LoadCheckpointResult,
        LoadMessagesInput,
        LoadMessagesResult,
        RecordCompactionInput,
        RecordServedInput,
        RetrieveInput,
        RetrieveResult,
        SummarizeInput,
        SummarizeResult,
    )
    from memory.models import CompactionRecord

__all__ = ["archive", "chat", "load_checkpoint", "load_messages", "record", "record_served",
           "record_stored", "retrieve", "save_checkpoint", "summarize"]

R = TypeVar("R")

OUTAGE_RETRY = RetryPolicy(initial_interval=timedelta(milliseconds=200), backoff_coefficient=2.0,
                           maximum_interval=timedelta(seconds=10))
ARCHIVE_TIMEOUT = timedelta(minutes=5)
HEARTBEAT = timedelta(seconds=15)  # activities heartbeat every 5 s while they work
SUMMARIZE_TIMEOUT = timedelta(minutes=5)
# Short store calls take milliseconds; a short timeout means a call lost with a crashed
# worker is retried quickly (outages are still survived: the retries are unbounded).
RETRIEVE_TIMEOUT = timedelta(seconds=15)
STORE_TIMEOUT = timedelta(seconds=10)
CHAT_TIMEOUT = timedelta(minutes=5)


async def _call(name: str, arg: Any, result_type: type[R], timeout: timedelta,
                heartbeat: timedelta | None = None) -> R:
    result: R = await workflow.execute_activity(
        name, arg, result_type=result_type, start_to_close_timeout=timeout,
        heartbeat_timeout=heartbeat, retry_policy=OUTAGE_RETRY)
    return result


async def archive(arg: ArchiveInput) -> ArchiveResult:
    return await _call("archive_messages", arg, ArchiveResult, ARCHIVE_TIMEOUT, HEARTBEAT)


async def summarize(arg: SummarizeInput) -> SummarizeResult:
    return await _call("summarize_span", arg, SummarizeResult, SUMMARIZE_TIMEOUT, HEARTBEAT)


async def retrieve(arg: RetrieveInput) -> RetrieveResult:
    return await _call("retrieve_context", arg, RetrieveResult, RETRIEVE_TIMEOUT)


async def record(arg: RecordCompactionInput) -> bool:
    return await _call("record_compaction", arg, bool, STORE_TIMEOUT)


async def record_stored(arg: RecordCompactionInput) -> CompactionRecord:
    return await _call("record_compaction_stored", arg, CompactionRecord, STORE_TIMEOUT)


async def record_served(arg: RecordServedInput) -> int:
    return await _call("record_served", arg, int, STORE_TIMEOUT)


async def save_checkpoint(arg: CheckpointInput) -> None:
    await workflow.execute_activity("save_checkpoint", arg, start_to_close_timeout=STORE_TIMEOUT,
                                    retry_policy=OUTAGE_RETRY)


async def load_checkpoint(arg: LoadCheckpointInput) -> LoadCheckpointResult:
    return await _call("load_checkpoint", arg, LoadCheckpointResult, STORE_TIMEOUT)


async def load_messages(arg: LoadMessagesInput) -> LoadMessagesResult:
    return await _call("load_messages", arg, LoadMessagesResult, STORE_TIMEOUT)


async def chat(arg: ChatInput) -> ChatResult:
    return await _call("complete_chat", arg, ChatResult, CHAT_TIMEOUT, HEARTBEAT)
