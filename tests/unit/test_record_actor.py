"""Who asked for a ledger record, and how many messages it kept verbatim, are in the record:
an auditor asking "who undid c37, and why were the newest 2 kept?" reads them there."""

from __future__ import annotations

import getpass
import os

import pytest
from rich.console import Console

from longthread.audit import trace_turn
from longthread.settings import Settings, acting_for
from longthread.views import ledger_table, why_lines
from memory.errors import InvalidInputError
from memory.models import CompactionRecord
from memory.policy import CompactionPolicy
from memory.session import Session
from memory.window import compose_removal


def _session(auto: bool = False) -> Session:
    session = Session("t", policy=CompactionPolicy(context_window=256, preserve_recent=3),
                      auto_compact=auto, clock=lambda: 0.0)
    session.add_messages([{"id": f"m{i}", "role": "user" if i % 2 == 0 else "assistant",
                           "content": f"Order {4700 + i} was shipped to depot {i} on Friday."}
                          for i in range(12)])
    return session


def test_a_manual_compaction_and_its_undo_each_name_their_own_asker() -> None:
    session = _session()
    record = session.compact(preserve_recent=2, actor="agent:ana")
    assert record is not None
    assert record.actor == "agent:ana" and record.preserve_recent == 2
    undo = session.uncompact(record.id, actor="auditor:bo")
    # An undo copies most of its target's fields: never its asker, nor what it kept.
    assert undo.actor == "auditor:bo" and undo.preserve_recent is None
    again = session.compact(actor="  ")  # nobody named: the policy's preserve_recent
    assert again is not None and again.actor is None and again.preserve_recent == 3


def test_an_automatic_compaction_records_the_policys_preserve_recent_and_no_actor() -> None:
    session = _session(auto=True)
    automatic = [r for r in session.ledger if r.trigger == "auto"]
    assert automatic, "twelve messages are over 70% of 256 tokens"
    assert all(r.actor is None and r.preserve_recent == 3 for r in automatic)


@pytest.mark.parametrize(("actor", "problem"), [
    ("x" * 201, "actor: is 201 characters; the limit is 200"),
    ("a\x00b", "actor: contains a NUL character"),
])
def test_an_unstorable_actor_is_refused_by_name_before_anything_changes(
        actor: str, problem: str) -> None:
    session = _session()
    with pytest.raises(InvalidInputError, match=problem):
        session.compact(actor=actor)
    assert session.ledger == []
    with pytest.raises(ValueError, match=problem.split(":")[1].strip()) as info:
        Settings(actor=actor)
    assert "actor: " not in str(info.value)  # LONGTHREAD_ACTOR is named once, by the CLI


def test_old_records_without_an_actor_still_parse() -> None:
    record = _session().compact()
    assert record is not None
    old = record.model_dump(mode="json")
    del old["actor"], old["preserve_recent"]
    parsed = CompactionRecord.model_validate(old)
    assert parsed.actor is None and parsed.preserve_recent is None


def test_the_ledger_table_and_why_show_who_asked_and_what_was_kept() -> None:
    session = _session()
    record = session.compact(preserve_recent=2, actor="cli:alice")
    assert record is not None
    console = Console(width=600, record=True)
    console.print(ledger_table(session.ledger))
    text = console.export_text()
    assert "manual by cli:alice" in text and "kept at least the newest 2 verbatim" in text, text
    message = session.messages[0]
    lines = why_lines(trace_turn(1, message, session.ledger))
    assert any(f"manual/{record.level} by cli:alice (" in line for line in lines), lines


def test_a_pop_records_its_asker() -> None:
    session = _session()
    made = compose_removal(session.window, "pop", seq=0, actor="mcp:agent")
    assert made is not None and made[1].actor == "mcp:agent"


def test_a_surface_records_the_actor_setting_else_its_own_user(
        monkeypatch: pytest.MonkeyPatch) -> None:
    assert acting_for(Settings(actor="alice"), "cli") == "alice"
    assert acting_for(Settings(), "ui") == f"ui:{getpass.getuser()}"

    def nobody() -> str:  # a container's bare uid: no LOGNAME or USER, no passwd entry
        raise OSError("no user")

    monkeypatch.setattr(getpass, "getuser", nobody)
    assert acting_for(Settings(), "mcp") == f"mcp:uid {os.getuid()}"
