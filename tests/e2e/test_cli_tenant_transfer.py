"""`export-all` writes every session of a tenant, one export file each, and `import-all` puts
them back, each into the session its file names: what answering "all of our data" or moving
a customer to another deployment takes."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

from temporalio.worker import Worker

from longthread.cli_tenant import MAX_STEM_BYTES, file_name, file_names
from tests.e2e.test_cli import LINES, cli, env

__all__ = ["env"]  # the fixture, imported for its use here

SESSIONS = ("ticket-1", "acme/2024/17", ".hidden", "#4711/café")


def _jsonl(path: Path, session: str, n: int) -> Path:
    path.write_text("".join(json.dumps({
        "id": f"{session}-m{i}", "role": ("user", "assistant")[i % 2],
        "content": f"{LINES[i % len(LINES)]} ({session} {i})",
        "created_at": f"2024-03-0{1 + i // 10}T10:{i % 60:02d}:00Z"}) + "\n" for i in range(n)))
    return path


def _messages(path: Path) -> list[str]:
    """An export's message lines, as written (the first line is its header)."""
    return [line for line in path.read_text().splitlines()[1:] if "role" in json.loads(line)]


def test_file_names_are_safe_and_distinct() -> None:
    names = [file_name(s) for s in (*SESSIONS, "a" * 200, "é" * 200, "é" * 199 + "f")]
    assert len(set(names)) == len(names)
    assert all("/" not in n and not n.startswith(".") and n.endswith(".jsonl") for n in names)
    assert all(len(n.encode()) <= MAX_STEM_BYTES + len(".jsonl") for n in names)
    assert file_name("acme/2024/17") == "acme%2F2024%2F17.jsonl"
    cased = file_names(["Ticket-1", "ticket-1", "other"])
    assert len({n.casefold() for n in cased.values()}) == 3 and cased["other"] == "other.jsonl"


async def test_export_all_then_import_all_into_another_tenant(
    env: dict[str, str], worker: Worker, tmp_path: Path
) -> None:
    tenant, copy = f"t-{uuid.uuid4().hex[:8]}", f"c-{uuid.uuid4().hex[:8]}"
    for n, session in enumerate(SESSIONS):
        code, _, err = await cli(env, "import", session,
                                 str(_jsonl(tmp_path / f"in{n}.jsonl", session, 12 + n)),
                                 "--tenant", tenant)
        assert code == 0, err
    code, out, err = await cli(env, "compact", SESSIONS[0], "--tenant", tenant,
                               "--preserve-recent", "4")
    assert code == 0, err
    code, out, err = await cli(env, "context", SESSIONS[0], "--tenant", tenant, "-q",
                               "Where does Ana move to?", "-n", "300")  # a served context
    assert code == 0, err

    exported = tmp_path / "out"
    code, out, err = await cli(env, "export-all", str(exported), "--tenant", tenant)
    assert code == 0, err
    assert f"exported 4 sessions of tenant '{tenant}'" in " ".join(out.split())
    assert sorted(p.name for p in exported.iterdir()) == sorted(map(file_name, SESSIONS))
    # Again: refused before anything is written, unless --force.
    code, _, err = await cli(env, "export-all", str(exported), "--tenant", tenant)
    assert code == 2 and "4 of the files exist already" in " ".join(err.split()), err
    code, _, err = await cli(env, "export-all", str(exported), "--tenant", tenant, "--force")
    assert code == 0, err

    code, out, err = await cli(env, "import-all", str(exported), "--tenant", copy)
    assert code == 0, err
    assert f"imported 4 sessions into tenant '{copy}'" in " ".join(out.split())
    for session in SESSIONS:  # the same messages and ledger, under the same session names
        code, original, err = await cli(env, "ledger", session, "--tenant", tenant, "--json")
        assert code == 0, err
        code, copied, err = await cli(env, "ledger", session, "--tenant", copy, "--json")
        assert code == 0, err
        assert [r["id"] for r in json.loads(copied)] == [r["id"] for r in json.loads(original)]
        again = tmp_path / "again.jsonl"
        code, _, err = await cli(env, "export", session, str(again), "--tenant", copy,
                                 "--force")
        assert code == 0, err
        assert _messages(again) == _messages(exported / file_name(session))
        assert len(_messages(again)) == 12 + SESSIONS.index(session)
    code, out, err = await cli(env, "replay", SESSIONS[0], "--tenant", copy, "--at", "12")
    assert code == 0 and "MATCHES" in out, err + out  # what was served, rebuilt on the copy
    code, out, err = await cli(env, "sessions", "--tenant", copy, "--json")
    assert code == 0, err
    assert sorted(s["session"] for s in json.loads(out)) == sorted(SESSIONS)


async def test_refusals_name_what_is_wrong(
    env: dict[str, str], worker: Worker, tmp_path: Path
) -> None:
    empty = f"e-{uuid.uuid4().hex[:8]}"
    code, _, err = await cli(env, "export-all", str(tmp_path / "x"), "--tenant", empty)
    assert code == 2 and f"no session in tenant '{empty}'" in err, err
    plain = tmp_path / "plain"
    plain.mkdir()
    _jsonl(plain / "messages.jsonl", "s", 3)  # messages only, no export header
    code, _, err = await cli(env, "import-all", str(plain), "--tenant", empty)
    assert code == 2 and "messages.jsonl: is not a file `export` wrote" in " ".join(
        err.split()), err
    code, _, err = await cli(env, "import-all", str(tmp_path / "none"), "--tenant", empty)
    assert code == 2 and "is not a directory" in err, err
