"""`longthread demo` as a newcomer runs it: a real subprocess on a fresh data dir, with no
XDG_RUNTIME_DIR and no LONGTHREAD_* settings, so it shows what a fresh clone shows. The output
must be clean (no warning, no stack line) and must show each promise it claims to show."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from longthread.data import bundled_script
from memory.models import parse_messages, validate_sequence

DEMO_TIMEOUT = 300.0


def _fresh_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("LONGTHREAD_") and k != "XDG_RUNTIME_DIR"}
    env["PYTHONIOENCODING"] = "utf-8"
    return env


def test_bundled_conversation_is_valid_and_answers_its_questions() -> None:
    """The shipped JSONL parses as a session (ids unique, every tool result answers an earlier
    call), spans days, and its questions point at turns that exist."""
    script = bundled_script()
    messages = parse_messages(script.messages)
    validate_sequence(messages)
    ids = {m.id for m in messages}
    assert len(messages) >= 300 and len({m.created_at.date() for m in messages
                                          if m.created_at}) >= 5
    assert sum(1 for m in messages if m.role == "tool") >= 40
    assert 4 <= len(script.questions) <= 6
    assert {"corrected fact", "tool result"} <= {q.kind for q in script.questions}
    for q in script.questions:
        assert q.evidence and set(q.evidence) | set(q.superseded) <= ids
    tools = {m.id for m in messages if m.role == "tool"}
    assert any(set(q.evidence) & tools for q in script.questions if q.kind == "tool result")


def test_demo_output_is_clean_and_shows_each_promise(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "longthread", "demo", "--data-dir", str(tmp_path / "demo")],
        env=_fresh_env(), capture_output=True, text=True, encoding="utf-8",
        timeout=DEMO_TIMEOUT, check=False)
    both = proc.stdout + proc.stderr
    assert proc.returncode == 0, both[-3000:]
    assert "Warning" not in both and "Traceback" not in both, both[:3000]
    assert not re.search(r'File ".*", line \d+', both), both[:3000]
    assert proc.stderr.strip() == "", proc.stderr

    out = proc.stdout
    assert re.search(r"⟳ c\d+ auto/", out), "no compaction was shown as it committed"
    summary = re.search(r"summary section: (\d+) tokens \((\d+) summaries\)", out)
    assert summary and int(summary[1]) > 0 and int(summary[2]) > 0, "no summary in the window"
    assert "MATCHES" in out and "DIFFERS" not in out
    assert len(re.findall(r"replay --at \d+", out)) == 2
    undo = re.search(r"undo u\d+ of c\d+: (\d+) of (\d+) covered messages", out)
    assert undo and int(undo[1]) == int(undo[2]) > 0, "the undo did not bring the originals back"
    assert re.search(r"after the undo .*replay MATCHES", out, re.S)

    assert len(re.findall(r"^Q\d\. ", out, re.M)) == 6
    hits = set(re.findall(r"✓ (?:retrieved|recent|summary) +\[(d\d-\d{3})[ \]]", out))
    assert hits & {"d2-007", "d2-009", "d2-014", "d2-032"}, "no turn with the corrected total"
    assert hits & {"d3-015", "d3-018"}, "the bank transfer's reference was not retrieved"
    assert re.search(r"^ +✓ retrieved +\[d\d-\d{3} 2026-03-\d\d\] \S+: ", out, re.M), \
        "no evidence line shown"
    tally = re.search(r"evidence in the window: (\d+) of (\d+) turns; questions with "
                      r"evidence: (\d+) of (\d+)", out)
    assert tally, out
    found, total, answered, asked = map(int, tally.groups())
    assert answered == asked == 6 and 2 * found >= total, out
