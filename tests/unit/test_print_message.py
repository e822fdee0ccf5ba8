"""`longthread show` prints a stored message whole, and a tool's output cannot drive the
terminal it is shown on."""

from __future__ import annotations

import io

from rich.console import Console

from longthread.views import print_message
from memory.models import Message

CONTENT = "[bold]total[/bold]\t:memo: 42\x1b]0;owned\x07\x1b[2J\rhidden\n"


def _printed(terminal: bool) -> str:
    out = io.StringIO()
    console = Console(file=out, force_terminal=terminal, width=40)
    print_message(console, Message(id="t1", role="tool", tool_call_id="c1", content=CONTENT))
    return out.getvalue()


def test_piped_output_is_the_content_byte_for_byte() -> None:
    printed = _printed(terminal=False)
    assert printed == f"t1 · tool · result of c1 · {len(CONTENT.encode())} bytes\n{CONTENT}\n"


def test_a_terminal_sees_control_characters_escaped_and_nothing_else_changed() -> None:
    printed = _printed(terminal=True)
    assert "\x1b" not in printed and "\x07" not in printed and "\r" not in printed
    assert ("[bold]total[/bold]\t:memo: 42\\x1b]0;owned\\x07\\x1b[2J\\x0dhidden\n"
            in printed)


def test_an_imported_ledger_record_is_shown_never_interpreted() -> None:
    """Ledger records can come from an import: their reason and model are text on screen,
    neither rich markup (`[/]` used to crash the table) nor terminal escapes."""
    from longthread.views import ledger_table
    from memory.models import CompactionRecord

    record = CompactionRecord(id="c1", seq=0, level="light", action="archive",
                              reason="[/] [red]x[/red] \x1b[2J done", covered_ids=("m1",),
                              covered_hash="h", strategy="extractive", model="[/b]m",
                              tokens_before=10, tokens_after=5)
    out = io.StringIO()
    Console(file=out, force_terminal=True, width=400).print(ledger_table([record]))
    printed = out.getvalue()
    assert "[/] [red]x[/red] \\x1b[2J done" in printed and "[/b]m" in printed
    assert "\x1b[2J" not in printed


def test_the_ledger_table_shows_merges_and_undoes_without_a_level_or_ratio() -> None:
    """An undo copies the level of the record it undoes, and its window grows (a 0.0×
    ratio); a merge was invisible in the table (found by a user test)."""
    from longthread.views import ledger_table
    from tests.unit.sessions import compacted_rounds

    session = compacted_rounds(3)  # c3 folds s1 and s2 into c3-merged
    session.uncompact("c3")
    out = io.StringIO()
    Console(file=out, width=400).print(ledger_table(session.ledger))
    rows = {line.split("│")[1].strip(): [c.strip() for c in line.split("│")[1:-1]]
            for line in out.getvalue().splitlines() if line.count("│") > 5}
    assert "folded 2 summaries into c3-merged (L2)" in rows["c3"][6]
    assert rows["u4"][3] == "-" and rows["u4"][8] == "-" and rows["u4"][6] == "undo of c3"
    assert rows["c1"][3] == "medium" and rows["c1"][8].endswith("×")


def test_the_window_view_shows_control_characters_escaped_piped_or_not() -> None:
    """`longthread context` without --json is a view for reading: a stored ESC sequence
    recoloured the terminal it was piped to (session 25's security review)."""
    from longthread.views import print_window
    from memory.models import ContextMessage, ContextWindow

    window = ContextWindow(messages=(ContextMessage(
        role="user", content="bell\x07 esc\x1b[31mRED\x1b[0m cr\rover", section="recent",
        tokens=12),), tokens=12, budget=100)
    for terminal in (False, True):
        out = io.StringIO()
        print_window(Console(file=out, force_terminal=terminal, width=200), window)
        assert "\x1b[31m" not in out.getvalue() and "\x07" not in out.getvalue()
        assert "bell\\x07 esc\\x1b[31mRED\\x1b[0m cr ⏎ over" in out.getvalue()
