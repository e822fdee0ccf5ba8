"""What the worker does, as metrics: messages stored and embedded, compactions by kind and
level, tokens they freed and how long they took, summaries that fell back to extractive.

They go through the activity's metric meter (Temporal's own metrics API), so a worker run with
LONGTHREAD_METRICS_ADDRESS serves them on its Prometheus endpoint beside the SDK's worker
metrics (task latencies, failures, slots); without it the SDK's no-op meter drops them.
Attributes stay low-cardinality on purpose: no tenant, no session (a label per session would
grow without bound, and session names can be customer data). design.md: compaction events
"go to the ledger and to logs and metrics".
"""

from __future__ import annotations

from temporalio import activity

from memory.models import CompactionEvent

__all__ = ["compaction_event", "messages_embedded", "messages_stored", "summarizer_fallback"]


def _counter(name: str, description: str, value: int, **attributes: str) -> None:
    if value > 0:  # a counter takes no negatives; a zero adds nothing
        activity.metric_meter().create_counter(name, description).add(value, attributes)


def messages_stored(appended: int, duplicates: int) -> None:
    for outcome, count in (("appended", appended), ("duplicate", duplicates)):
        _counter("longthread_messages_stored", "Messages an append stored (appended) or found "
                 "already stored with the same content (duplicate).", count, outcome=outcome)


def messages_embedded(count: int) -> None:
    _counter("longthread_messages_embedded", "Messages embedded and indexed for retrieval.",
             count)


def compaction_event(event: CompactionEvent) -> None:
    """Every event counts by kind (started, completed, failed, skipped) and level; a completed
    one also adds the tokens it took out of the window and its duration."""
    meter = activity.metric_meter()
    meter.create_counter("longthread_compactions", "Compaction events by kind and level.").add(
        1, {"kind": event.kind, "level": event.level})
    if event.kind != "completed":
        return
    if event.tokens_after is not None and event.tokens_before > event.tokens_after:
        _counter("longthread_compaction_tokens_freed", "Window tokens completed compactions "
                 "took out (tokens before minus after).",
                 event.tokens_before - event.tokens_after, level=event.level)
    if event.duration_ms is not None:
        meter.create_histogram("longthread_compaction_duration", "How long a completed "
                               "compaction took, planning and summarizing included.",
                               "ms").record(max(0, round(event.duration_ms)),
                                            {"level": event.level})


def summarizer_fallback(step: str) -> None:
    """`step`: "summary" (a compaction's summary) or "merge" (its merge of older ones)."""
    _counter("longthread_summarizer_fallbacks", "Summaries and merges the configured "
             "summarizer failed or refused, made extractively instead.", 1, step=step)
