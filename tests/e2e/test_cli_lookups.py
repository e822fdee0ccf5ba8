"""What a reader of a window holds, the CLI takes: a long id by the tail the window shows
(`show`, `why`), `why` by message id as well as by turn, and `sessions --json`."""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path

from temporalio.worker import Worker

from tests.e2e.test_cli import LINES, cli, env

__all__ = ["env"]  # the fixture, imported for its use here

SHARED_TAIL = "abcabc12"
NUMERIC_AT = 10  # the message with id "7" is the 11th stored


def _uuid_with_a_lettered_tail() -> str:
    """A UUID whose last 8 characters are not all digits. An all-digit tail reads as a turn
    number (`why` takes a number as a turn; that rule has its own case below), and about one
    UUID in 43 has one (CI saw it: stop 36)."""
    while (ident := str(uuid.uuid4()))[-8:].isdigit():
        pass
    return ident


def _ids(n: int) -> list[str]:
    ids = [_uuid_with_a_lettered_tail() for _ in range(n)]
    ids[NUMERIC_AT] = "7"  # an id that reads like a turn number
    ids[20], ids[21] = (_uuid_with_a_lettered_tail()[:-8] + SHARED_TAIL for _ in range(2))
    return ids


def _jsonl(path: Path, ids: list[str]) -> Path:
    path.write_text("".join(json.dumps({
        "id": ident, "role": ("user", "assistant")[i % 2], "name": ("Priya", "Bo")[i % 2],
        "content": f"{LINES[i % len(LINES)]} ({i})",
        "created_at": f"2024-03-{1 + i // 10:02d}T10:{i % 60:02d}:00Z"}) + "\n"
        for i, ident in enumerate(ids)))
    return path


def _flat(text: str) -> str:
    """An error line as one line, however the console wrapped it."""
    return " ".join(text.split())


async def test_show_and_why_take_the_tail_a_window_shows(
    env: dict[str, str], worker: Worker, tmp_path: Path
) -> None:
    ids = _ids(40)
    code, _, err = await cli(env, "import", "tails", str(_jsonl(tmp_path / "t.jsonl", ids)),
                             "--tenant", "acme")
    assert code == 0, err
    code, out, err = await cli(env, "compact", "tails", "--tenant", "acme",
                               "--preserve-recent", "4")
    assert code == 0, err
    code, out, err = await cli(env, "context", "tails", "--tenant", "acme", "--json",
                               "-q", "Where does Ana move to?", "-n", "2000")
    assert code == 0, err
    text = "\n".join(m["content"] for m in json.loads(out)["messages"])
    tails = re.findall(r"\[…([0-9a-f]{8})[ \]]", text)
    assert tails, text  # the window shows the archived UUIDs by their tails
    # The first tail one id alone ends with (a window holding only one of the two sharing
    # SHARED_TAIL shows it by that tail too; the ambiguous case has its own assertions below).
    tail = next(t for t in tails if sum(i.endswith(t) for i in ids) == 1)
    (whole,) = [i for i in ids if i.endswith(tail)]

    for shown in (f"…{tail}", tail):
        code, out, err = await cli(env, "show", "tails", shown, "--tenant", "acme")
        assert code == 0, err
        assert out.startswith(f"{whole} · "), out
    code, out, err = await cli(env, "show", "tails", f"…{tail}", ids[0], "--tenant", "acme",
                               "--json")
    assert code == 0, err
    assert [m["id"] for m in json.loads(out)] == [whole, ids[0]]

    # A tail two ids end with names neither: refused, naming both; what was found is shown.
    code, out, err = await cli(env, "show", "tails", ids[0], f"…{SHARED_TAIL}", "nope",
                               "--tenant", "acme")
    assert code == 2 and out.startswith(f"{ids[0]} · "), err
    assert _flat(err) == (
        f"error: ids: no message 'nope' in session 'tails'; '…{SHARED_TAIL}' is ambiguous: "
        f"2 message ids end with '{SHARED_TAIL}' ('{ids[20]}', '{ids[21]}'); give the whole "
        "id; 1 shown"), err

    # `why` by the message's id (whole or its tail) says what `why` by its turn says.
    turn = ids.index(whole) + 1
    code, by_turn, err = await cli(env, "why", "tails", str(turn), "--tenant", "acme", "--json")
    assert code == 0, err
    for target in (f"…{tail}", whole):
        code, out, err = await cli(env, "why", "tails", target, "--tenant", "acme", "--json")
        assert code == 0, err
        assert json.loads(out) == json.loads(by_turn)
    assert json.loads(by_turn)["turn"] == turn and json.loads(by_turn)["message"]["id"] == whole
    code, out, err = await cli(env, "why", "tails", tail, "--tenant", "acme")
    assert code == 0, err
    assert out.startswith(f"turn {turn} is message '{whole}'"), out

    # A number is a turn; --id reads it as an id.
    code, out, err = await cli(env, "why", "tails", "7", "--tenant", "acme")
    assert code == 0 and out.startswith(f"turn 7 is message '{ids[6]}'"), err + out
    code, out, err = await cli(env, "why", "tails", "7", "--id", "--tenant", "acme")
    assert code == 0 and out.startswith(f"turn {NUMERIC_AT + 1} is message '7'"), err + out
    code, _, err = await cli(env, "why", "tails", "99", "--tenant", "acme")
    assert code == 2 and "turns are 1 to 40; to read '99' as a message id, pass --id" in \
        _flat(err), err
    code, _, err = await cli(env, "why", "tails", "0", "--tenant", "acme")
    assert code == 2 and "turn: must be 1 to" in err, err
    code, _, err = await cli(env, "why", "tails", f"…{SHARED_TAIL}", "--tenant", "acme")
    assert code == 2 and f"id: '…{SHARED_TAIL}' is ambiguous" in _flat(err), err
    code, _, err = await cli(env, "why", "tails", "…ffffffff", "--tenant", "acme")
    assert code == 2 and "id: no message '…ffffffff' in session 'tails'" in _flat(err), err


async def test_sessions_json(env: dict[str, str], worker: Worker, tmp_path: Path) -> None:
    tenant = f"t-{uuid.uuid4().hex[:8]}"
    code, _, err = await cli(env, "import", "s1", str(_jsonl(tmp_path / "s.jsonl", _ids(30))),
                             "--tenant", tenant)
    assert code == 0, err
    code, out, err = await cli(env, "sessions", "--tenant", tenant, "--json")
    assert code == 0, err
    (listed,) = json.loads(out)
    assert set(listed) == {"session", "messages", "first_at", "last_at", "appended_at"}
    assert (listed["session"], listed["messages"]) == ("s1", 30)
    assert listed["first_at"].startswith("2024-03-01T10:00:00")
    assert listed["last_at"].startswith("2024-03-03T10:29:00") and listed["appended_at"]
    code, out, err = await cli(env, "sessions", "--tenant", f"{tenant}-none", "--json")
    assert code == 0 and json.loads(out) == [], err
