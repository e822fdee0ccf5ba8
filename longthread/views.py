"""Rich renderings of windows, ledgers, stats and sessions for the CLI and the demo.

The one-line helpers (`record_line`, `sections_line`, `message_line`, `evidence_hits`) exist so
the demo reads well in an 80-column terminal and in a captured log, where wide tables wrap.
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Mapping, Sequence
from datetime import date, datetime
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from longthread.audit import TurnHistory, by
from memory.models import (
    CompactionEvent,
    CompactionRecord,
    ContextWindow,
    Message,
    ScoredMessage,
)
from memory.store.store import SessionInfo
from workflows.types import ConversationStats

__all__ = ["clip", "counted", "day_heading", "event_line", "evidence_hits", "indented",
           "ledger_table", "message_line", "print_message", "print_window", "record_line",
           "sections_line", "sessions_table", "stats_table", "visible", "why_lines"]


_CONTROL_CHARS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def counted(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _ids(ids: Sequence[str], limit: int = 4) -> str:
    if len(ids) <= limit:
        return ", ".join(ids)
    return f"{ids[0]} … {ids[-1]} ({len(ids)})"


def ledger_table(records: Sequence[CompactionRecord]) -> Table:
    table = Table(title="Compaction ledger", show_lines=False)
    for column in ("#", "when", "trigger", "level", "why", "ids covered", "strategy / model",
                   "tokens before → after", "ratio", "ms"):
        table.add_column(column, overflow="fold")
    for r in records:
        strategy = r.strategy + (f" / {r.model}" if r.model else "")
        if r.fallback:
            strategy += f" (fallback: {r.fallback})"
        if r.merged_summary is not None:
            strategy += (f"; folded {len(r.removed_summary_ids)} summaries into "
                         f"{r.merged_summary.id} (L{r.merged_summary.level})")
        undo = r.trigger == "undo"
        if undo:  # an undo has no level of its own (it copies the record it undoes)
            strategy = f"undo of {r.undoes}"
        # Records can come from an imported file: their text is shown, never interpreted
        # (no rich markup, no terminal escapes).
        why = r.reason + (f"; kept at least the newest {r.preserve_recent} verbatim"
                          if r.preserve_recent is not None else "")
        cells = (r.id, r.at.strftime("%Y-%m-%d %H:%M:%S") if r.at else "-", r.trigger + by(r),
                 "-" if undo else r.level, why, _ids(r.covered_ids), strategy,
                 f"{r.tokens_before} → {r.tokens_after}",
                 f"{r.ratio:.1f}×" if r.tokens_after and r.tokens_before and not undo else "-",
                 f"{r.duration_ms:.0f}")
        table.add_row(*(Text(visible(cell)) for cell in cells))
    return table


def print_window(console: Console, window: ContextWindow, width: int = 160) -> None:
    """A readable view of a window: long lines and long messages are cut, and then it says
    where the exact window is. Control characters are shown escaped (`visible`), piped or not:
    this view is for reading (a stored ESC sequence recoloured the terminal)."""
    console.print(f"[bold]{window.tokens}[/bold] of {window.budget} tokens; sections "
                  "(tokens/allotted, items; what one leaves unused flows to the others): "
                  + ", ".join(f"{s.name} {s.tokens}/{s.budget} ({s.items})"
                              for s in window.sections))
    cut = False
    for message in window.messages:
        lines = message.content.splitlines() or [""]
        if message.section not in ("summary", "retrieved"):
            lines = [" ⏎ ".join(lines)]
        if message.tool_calls:  # an empty content with a call is the call, not nothing
            calls = f"[calls {', '.join(c.name for c in message.tool_calls)}]"
            lines[-1] = f"{lines[-1]} {calls}" if lines[-1] else calls
        console.print(f"  [dim]{message.section:>9}[/dim] {message.role:>9}: ", end="")
        for n, line in enumerate(lines[:14]):
            text = visible(line if len(line) <= width else line[: width - 1] + "…")
            cut = cut or len(line) > width
            console.print(("" if n == 0 else " " * 23) + text, markup=False, highlight=False,
                          soft_wrap=True)
        if len(lines) > 14:
            cut = True
            console.print(" " * 23 + f"… {len(lines) - 14} more lines", highlight=False)
    if cut:
        console.print("[dim]Long lines and messages are cut here; --json gives the window "
                      "exactly as the model gets it.[/dim]")


def visible(text: str) -> str:
    r"""Control characters (but tab and newline) as `\x1b`-style escapes: a tool's output must
    not drive the terminal it is shown on (move the cursor, retitle it, hide text)."""
    return _CONTROL_CHARS.sub(lambda c: f"\\x{ord(c.group()):02x}", text)


def print_message(console: Console, message: Message) -> None:
    """One stored message whole: a header line, then its content as it was appended.

    Piped or redirected, the content is written byte for byte (no markup, emoji codes, tab
    expansion or wrapping: `[bold]` and `:memo:` are text); on a terminal, control characters
    are shown escaped (`visible`)."""
    def emit(text: str) -> None:
        console.file.write((visible(text) if console.is_terminal else text) + "\n")

    head = [message.id, message.role]
    if message.name:
        head.append(f"name {message.name}")
    if message.created_at:
        head.append(message.created_at.isoformat())
    if message.tool_call_id:
        head.append(f"result of {message.tool_call_id}")
    head.append(f"{len(message.content.encode()):,} bytes")
    emit(" · ".join(head))
    for call in message.tool_calls:
        emit(f"calls {call.name} ({call.id}): {call.arguments}")
    if message.content:
        emit(message.content)
    console.file.flush()


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


def _when(at: datetime | None) -> str:
    return at.strftime("%Y-%m-%d %H:%M:%S %Z").rstrip() if at else "-"


def sessions_table(tenant: str, sessions: Sequence[SessionInfo]) -> Table:
    table = Table(title=f"Sessions of tenant {tenant}")
    for column in ("session", "messages", "first", "last", "last appended"):
        table.add_column(column)
    for s in sessions:
        table.add_row(Text(visible(s.session)), str(s.messages), _when(s.first_at),
                      _when(s.last_at), _when(s.appended_at))
    return table


def search_table(query: str, hits: Sequence[ScoredMessage]) -> Table:
    """Search hits, best first: where each is (session, turn, id), when, and its opening."""
    table = Table(title=f"Messages matching {query!r}")
    for column in ("session", "turn", "id", "sent", "score", "text"):
        table.add_column(column)
    for hit in hits:
        m = hit.message
        text = " ".join(m.content.split())
        table.add_row(Text(visible(hit.session or "")), str((hit.seq or 0) + 1),
                      Text(visible(m.id)), _when(m.created_at), f"{hit.score:.2f}",
                      Text(visible(f"{m.name or m.role}: {text[:120]}"
                                   + ("…" if len(text) > 120 else ""))))
    return table


def search_json(hits: Sequence[ScoredMessage]) -> list[dict[str, object]]:
    """`--json`: each hit's session, turn (seq + 1, what `why` and `replay` take), score and
    message, fields as stored."""
    return [{"session": h.session, "turn": (h.seq or 0) + 1, "seq": h.seq, "score": h.score,
             "message": h.message.model_dump(mode="json")} for h in hits]


def event_line(event: CompactionEvent) -> str:
    if event.kind == "completed":
        return (f"compaction {event.record_id} completed: {event.level}, "
                f"{event.tokens_before} → {event.tokens_after} tokens "
                f"({event.ratio or 0:.1f}×) in {event.duration_ms or 0:.0f} ms")
    if event.kind == "failed":
        return f"compaction {event.record_id} FAILED: {event.error}"
    if event.kind == "skipped":
        return f"compaction {event.record_id} not committed: {event.error}"
    return f"compaction {event.record_id} started: {event.reason}"


def why_lines(history: TurnHistory) -> list[str]:
    """`longthread why`: the message at a turn, what each ledger record did to it (and to the
    summaries that carry it), and where it stands now. Every stored text goes through
    `visible` (records and messages may come from an imported file); print the lines
    without markup."""
    def line(text: str) -> str:  # one line each: a stored newline must not forge a line
        return visible(text).replace("\n", "\\n")

    message = history.message
    when = message.created_at.strftime("%Y-%m-%d %H:%M:%S") if message.created_at else "-"
    lines = [line(f"turn {history.turn} is message {message.id!r} ({message.role}, {when}): "
                  f"{clip(message.content, 100)!r}")]
    for step in history.steps:
        at = step.at.strftime("%Y-%m-%d %H:%M:%S") if step.at else "-"
        why = f". Why: {step.why}" if step.why else ""
        lines.append(line(f"{step.record} {at} {step.what}{why}"))
    lines.append(line(f"now: {history.now}"))
    return lines


def record_line(record: CompactionRecord) -> str:
    """One ledger record on one short line: which turns went, into what, what it saved."""
    ids = record.covered_ids
    span = f"{ids[0]}…{ids[-1]} ({len(ids)})" if ids else "no messages"
    into = f" → {record.summary.id}" if record.summary is not None else " archived"
    if record.merged_summary is not None:
        into += f" +{len(record.removed_summary_ids)} folded to L{record.merged_summary.level}"
    return (f"{record.id} {record.trigger}/{record.level}{by(record)} {span}{into}: "
            f"{record.tokens_before:,}→{record.tokens_after:,} tokens")


def sections_line(window: ContextWindow) -> str:
    """Where a window's tokens went, section by section (items in parentheses)."""
    parts = ", ".join(f"{s.name} {s.tokens:,} ({s.items})" for s in window.sections
                      if s.name != "system" or s.items)
    return f"{window.tokens:,} of {window.budget:,} tokens: {parts}"


def message_line(message: Mapping[str, Any], width: int = 100) -> str:
    """A JSONL message as `id speaker: text`, tool calls named, clipped to `width`."""
    who = message.get("name") or message.get("role", "?")
    if message.get("role") == "tool":
        who = f"⤷ {who}"
    text = " ⏎ ".join(str(message.get("content") or "").splitlines())
    calls = [c.get("name", "?") for c in message.get("tool_calls") or []]
    if calls:
        text = f"{text} [calls {', '.join(calls)}]".strip()
    return clip(f"{message.get('id')} {who}: {text}", width)


def day_heading(day: str, count: int) -> str:
    """`── Mon 9 Mar 2026 · 96 messages` for an ISO date (or the raw text if it is not one)."""
    try:
        when = date.fromisoformat(day)
        label = f"{when:%a} {when.day} {when:%b %Y}"
    except ValueError:
        label = day or "undated"
    return f"── {label} · {count} messages"


def evidence_hits(window: ContextWindow, ids: Sequence[str]
                  ) -> list[tuple[str, str | None, str | None]]:
    """For each evidence id: the section that carries it (a summary quotes sentences of it) and
    the line that shows it, `[id …] speaker: text`, or (id, None, None) when it is absent."""
    hits: list[tuple[str, str | None, str | None]] = []
    for ident in ids:
        found: tuple[str, str | None, str | None] = (ident, None, None)
        for message in window.messages:
            if ident not in message.source_ids:
                continue
            if message.section == "recent":
                text = " ⏎ ".join(message.content.splitlines())
                found = (ident, "recent", f"[{ident}] {message.name or message.role}: {text}")
            else:
                line = next((ln.removeprefix("- ") for ln in message.content.splitlines()
                             if ln.startswith((f"[{ident} ", f"[{ident}]", f"- [{ident}]"))),
                            f"[{ident}]")
                found = (ident, message.section, line)
            break
        hits.append(found)
    return hits


def indented(console: Console, text: str, indent: int) -> None:
    """Data, never markup, indented on every wrapped line too (a plain print wraps to col 0)."""
    pad = " " * indent
    console.print(textwrap.fill(text, width=max(console.width, indent + 20), initial_indent=pad,
                                subsequent_indent=pad, break_on_hyphens=False),
                  markup=False, highlight=False, soft_wrap=True)


def clip(text: str, width: int) -> str:
    width = max(width, 20)
    return text if len(text) <= width else text[: width - 1] + "…"
