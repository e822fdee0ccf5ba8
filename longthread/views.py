"""Rich renderings of windows, ledgers, stats and sessions for the CLI and the demo."""

from __future__ import annotations

from collections.abc import Sequence

from rich.console import Console
from rich.table import Table

from memory.models import CompactionEvent, CompactionRecord, ContextWindow
from memory.store.store import SessionInfo
from workflows.types import ConversationStats

__all__ = ["event_line", "ledger_table", "print_window", "sessions_table", "stats_table"]


def _ids(ids: Sequence[str], limit: int = 4) -> str:
    if len(ids) <= limit:
        return ", ".join(ids)
    return f"{ids[0]} … {ids[-1]} ({len(ids)})"


def ledger_table(records: Sequence[CompactionRecord]) -> Table:
    table = Table(title="Compaction ledger", show_lines=False)
    for column in ("#", "when", "trigger", "level", "ids covered", "strategy / model",
                   "tokens before → after", "ratio", "ms"):
        table.add_column(column, overflow="fold")
    for r in records:
        strategy = r.strategy + (f" / {r.model}" if r.model else "")
        if r.fallback:
            strategy += f" (fallback: {r.fallback})"
        if r.undoes:
            strategy = f"undo of {r.undoes}"
        table.add_row(
            r.id, r.at.strftime("%Y-%m-%d %H:%M:%S") if r.at else "-", r.trigger, r.level,
            _ids(r.covered_ids), strategy, f"{r.tokens_before} → {r.tokens_after}",
            f"{r.ratio:.1f}×" if r.tokens_after else "-", f"{r.duration_ms:.0f}")
    return table


def print_window(console: Console, window: ContextWindow, width: int = 160) -> None:
    console.print(f"[bold]{window.tokens}[/bold] of {window.budget} tokens; sections: " + ", ".join(
        f"{s.name} {s.tokens}/{s.budget} ({s.items})" for s in window.sections))
    for message in window.messages:
        lines = message.content.splitlines() or [""]
        if message.section not in ("summary", "retrieved"):
            lines = [" ⏎ ".join(lines)]
        console.print(f"  [dim]{message.section:>9}[/dim] {message.role:>9}: ", end="")
        for n, line in enumerate(lines[:14]):
            text = line if len(line) <= width else line[: width - 1] + "…"
            console.print(("" if n == 0 else " " * 23) + text, markup=False, highlight=False,
                          soft_wrap=True)
        if len(lines) > 14:
            console.print(" " * 23 + f"… {len(lines) - 14} more lines", highlight=False)


def stats_table(stats: ConversationStats) -> Table:
    table = Table(title=f"Session {stats.tenant}/{stats.session}", show_header=False)
    ratio = stats.total_tokens / stats.window_tokens if stats.window_tokens else 0.0
    for key, value in (("messages", stats.messages), ("embedded", stats.embedded),
                       ("full-history tokens", stats.total_tokens),
                       ("window tokens", stats.window_tokens),
                       ("compression", f"{ratio:.1f}×"), ("ledger records", stats.ledger_head),
                       ("workflow runs (continue-as-new)", stats.runs)):
        table.add_row(key, str(value))
    return table


def sessions_table(tenant: str, sessions: Sequence[SessionInfo]) -> Table:
    table = Table(title=f"Sessions of tenant {tenant}")
    for column in ("session", "messages", "first", "last"):
        table.add_column(column)
    for s in sessions:
        table.add_row(s.session, str(s.messages), str(s.first_at or "-"), str(s.last_at or "-"))
    return table


def event_line(event: CompactionEvent) -> str:
    if event.kind == "completed":
        return (f"compaction {event.record_id} completed: {event.level}, "
                f"{event.tokens_before} → {event.tokens_after} tokens "
                f"({event.ratio or 0:.1f}×) in {event.duration_ms or 0:.0f} ms")
    if event.kind == "failed":
        return f"compaction {event.record_id} FAILED: {event.error}"
    return f"compaction {event.record_id} started: {event.reason}"
