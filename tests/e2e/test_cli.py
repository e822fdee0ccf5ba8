"""The CLI end to end, as subprocesses against the embedded stack (worker in this process)."""

from __future__ import annotations

import asyncio
import getpass
import json
import os
import sys
from pathlib import Path

import psycopg
import pytest
from psycopg.rows import DictRow
from temporalio.client import Client
from temporalio.worker import Worker

from activities.providers.embedders import LocalEmbedder
from longthread.client import Longthread
from longthread.settings import Settings
from memory.policy import CompactionPolicy
from memory.store.store import Store

ROOT = Path(__file__).resolve().parents[2]
LINES = ["I adopted a dog named Biscuit on 3 June.", "Biscuit loves the beach in Brighton.",
         "My sister Ana moves to Lisbon in August.", "We decided to paint the kitchen green.",
         "The plumber costs 180 EUR and comes Tuesday.", "Ana's new job is at a bakery."]


async def cli(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "longthread", *args, cwd=ROOT, env={**os.environ, **env},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 180)
    return proc.returncode or 0, out.decode(), err.decode()


@pytest.fixture
def env(client: Client, task_queue: str, app_url: str, tmp_path: Path) -> dict[str, str]:
    return {"LONGTHREAD_TEMPORAL_ADDRESS": client.service_client.config.target_host,
            "LONGTHREAD_DATABASE_URL": app_url, "LONGTHREAD_TASK_QUEUE": task_queue,
            "LONGTHREAD_DATA_DIR": str(tmp_path / "nodata"), "COLUMNS": "200"}


def _jsonl(path: Path, n: int) -> Path:
    with path.open("w") as out:
        for i in range(n):
            out.write(json.dumps({"id": f"D{i // 10}:{i % 10}", "name": ("Ana", "Bo")[i % 2],
                                  "role": ("user", "assistant")[i % 2],
                                  "content": f"{LINES[i % len(LINES)]} ({i})",
                                  "created_at": f"2023-05-{1 + i // 10:02d}T10:{i % 60:02d}:00Z"})
                      + "\n")
    return path


async def test_import_context_compact_ledger_replay_export_import(
    env: dict[str, str], worker: Worker, tmp_path: Path, db: psycopg.AsyncConnection[DictRow]
) -> None:
    source = _jsonl(tmp_path / "chat.jsonl", 60)
    code, out, err = await cli(env, "import", "life", str(source), "--tenant", "acme")
    assert code == 0, err
    assert "60 appended, 0 already present" in out
    code, out, _ = await cli(env, "import", "life", str(source), "--tenant", "acme")
    assert "0 appended, 60 already present" in out
    code, out, _ = await cli(env, "ledger", "life", "--tenant", "acme")
    assert code == 0 and "no compactions yet in 'life'" in out

    code, out, err = await cli(env, "compact", "life", "--tenant", "acme",
                               "--preserve-recent", "10", "--focus", "Biscuit")
    assert code == 0, err
    assert "c1" in out and "manual" in out
    code, out, err = await cli(env, "compact", "life", "--tenant", "acme",
                               "--preserve-recent", "10")
    assert code == 0, err
    assert ("nothing to compact: the window holds nothing older than its 10 most recent "
            "messages (--preserve-recent)") in out

    code, out, err = await cli(env, "context", "life", "--tenant", "acme", "--query",
                               "Where does Ana move?", "--max-tokens", "400", "--json")
    assert code == 0, err
    window = json.loads(out)
    assert window["tokens"] <= 400
    # Every sixth line says where Ana moves; they differ only in their "(i)" suffix, so
    # near-duplicate removal keeps one of them, and any one compacted away (i < 50) counts.
    ids = [i for m in window["messages"] for i in m["source_ids"]]
    moves = {f"D{i // 10}:{i % 10}" for i in range(50) if LINES[i % len(LINES)] == LINES[2]}
    assert moves & set(ids), ids

    # "Why was turn 3 summarized away?": the third message, the record that took it, why.
    code, out, err = await cli(env, "why", "life", "3", "--tenant", "acme")
    assert code == 0, err
    assert "turn 3 is message 'D0:2'" in out and "c1 " in out and "manual/" in out, out
    assert f" by cli:{getpass.getuser()} (" in out, out
    assert "Why: " in out and "now: out of the window since c1" in out, out
    code, out, err = await cli(env, "why", "life", "60", "--tenant", "acme", "--json")
    assert code == 0, err
    assert json.loads(out)["message"]["id"] == "D5:9" and json.loads(out)["in_force"] == []
    code, out, err = await cli(env, "why", "life", "61", "--tenant", "acme")
    assert code == 2 and "'life' has 60 messages; turns are 1 to 60" in err, err

    code, out, err = await cli(env, "ledger", "life", "--tenant", "acme", "--json")
    assert code == 0, err
    ledger = json.loads(out)
    assert [r["id"] for r in ledger] == ["c1"]
    assert len(ledger[0]["covered_ids"]) == 50
    # The CLI records who asked (no LONGTHREAD_ACTOR: the user it runs as) and what it kept.
    assert ledger[0]["actor"] == f"cli:{getpass.getuser()}", ledger[0]
    assert ledger[0]["preserve_recent"] == 10
    # With COLUMNS unset (empty, as the fixture sets it to 200):
    code, out, _ = await cli({**env, "COLUMNS": ""}, "ledger", "life", "--tenant", "acme")
    assert "Compaction ledger" in out and "manual" in out
    # Piped, the table is not folded at 80 columns: the record's row starts with its id,
    # time, trigger and level on one line.
    row = next(line for line in out.splitlines() if "│ c1 " in line)
    at = ledger[0]["at"]
    assert f"{at[:10]} {at[11:19]}" in row and "manual" in row, out

    # The served-context record is written by the background loop; replay settles first.
    code, out, err = await cli(env, "replay", "life", "--tenant", "acme", "--at", "60")
    assert code == 0, err + out
    assert "MATCHES" in out
    code, out, err = await cli(env, "replay", "life", "--tenant", "acme", "--at", "2147483647")
    assert code == 0, err + out
    assert "after turn 60, the newest at or before turn 2147483647" in out and "MATCHES" in out
    code, out, err = await cli(env, "replay", "life", "--tenant", "acme", "--at", "60", "--json")
    assert code == 0, err
    seq = json.loads(out)["served"]["seq"]
    code, out, err = await cli(env, "replay", "life", "--tenant", "acme", "--seq", str(seq))
    assert code == 0, err + out
    assert f"context {seq} served after turn 60" in out and "MATCHES" in out
    code, _, err = await cli(env, "replay", "life", "--tenant", "acme")
    assert code == 2 and "--at TURN or --seq N" in err

    export = tmp_path / "life.export.jsonl"
    code, out, err = await cli(env, "export", "life", str(export), "--tenant", "acme")
    assert code == 0, err
    assert "exported 60 messages, the ledger and 1 served context" in out
    code, _, err = await cli(env, "export", "life", str(export), "--tenant", "acme")
    assert code == 2 and "exists; pass --force" in err
    code, out, err = await cli(env, "export", "life", str(export), "--tenant", "acme", "--force")
    assert code == 0 and "exported 60 messages" in out, err
    code, out, err = await cli(env, "import", "copy", str(export), "--tenant", "acme")
    assert code == 0, err
    assert "60 appended" in out and "1 ledger record restored" in out
    assert "1 served context recorded for replay" in out
    code, out, _ = await cli(env, "ledger", "copy", "--tenant", "acme", "--json")
    assert json.loads(out) == ledger
    # An auditor of the copy sees what the model saw in the original, rebuilt exactly.
    code, out, err = await cli(env, "replay", "copy", "--tenant", "acme", "--at", "60",
                               "--json")
    assert code == 0, err
    replayed = json.loads(out)
    assert replayed["matches"] and replayed["served"]["query"] == "Where does Ana move?"
    assert replayed["served"]["seq"] == 1  # numbered anew: the copy's first served context
    # The copy goes on compacting on its own; importing the same file again is still a no-op.
    code, out, err = await cli(env, "compact", "copy", "--tenant", "acme",
                               "--preserve-recent", "2")
    assert code == 0 and "c2" in out, err + out
    code, out, err = await cli(env, "import", "copy", str(export), "--tenant", "acme")
    assert code == 0, err
    assert "0 appended, 60 already present" in out and "restored" not in out
    assert "recorded" not in out

    code, out, _ = await cli(env, "sessions", "--tenant", "acme")
    assert code == 0 and "life" in out and "copy" in out and "last appended" in out

    # Into a session that compacted on its own, the file's ledger cannot be restored: refused
    # before any of the file's messages is stored (user test, session 31: all were stored).
    part = tmp_path / "first40.jsonl"
    part.write_text("".join(source.read_text().splitlines(keepends=True)[:40]))
    code, _, err = await cli(env, "import", "own", str(part), "--tenant", "acme")
    assert code == 0, err
    code, _, err = await cli(env, "compact", "own", "--tenant", "acme", "--preserve-recent", "10")
    assert code == 0, err
    code, _, err = await cli(env, "import", "own", str(export), "--tenant", "acme")
    assert code == 2 and "the session already has a ledger of its own" in err, err
    cur = await db.execute("SELECT count(*) AS n FROM messages WHERE tenant = 'acme'"
                           " AND session = 'own'")
    assert await cur.fetchone() == {"n": 40}

    code, out, err = await cli(env, "uncompact", "life", "c1", "--tenant", "acme")
    assert code == 0, err
    code, out, _ = await cli(env, "ledger", "life", "--tenant", "acme", "--json")
    assert [(r["id"], r["undoes"]) for r in json.loads(out)] == [("c1", None), ("u2", "c1")]
    code, out, err = await cli(env, "why", "life", "3", "--tenant", "acme")
    assert code == 0 and "u2 " in out and "undid c1" in out, err + out
    assert "now: in the window verbatim (every compaction of it was undone)" in out, out
    code, _, err = await cli(env, "uncompact", "life", "c9", "--tenant", "acme")
    assert code == 2 and "c9" in err, err

    # An export with one covered message edited is refused before anything is stored.
    lines = export.read_text().splitlines()
    edited = next(n for n, line in enumerate(lines) if '"id": "D0:3"' in line
                  or '"id":"D0:3"' in line)
    lines[edited] = lines[edited].replace("(3)", "(three)")
    tampered = tmp_path / "tampered.jsonl"
    tampered.write_text("\n".join(lines) + "\n")
    code, out, err = await cli(env, "import", "tampered", str(tampered), "--tenant", "acme")
    assert code == 2 and "records[0]: ledger record 'c1': the messages it covered do not " \
        "give its covered hash; nothing was imported" in err, err + out
    code, out, err = await cli(env, "show", "tampered", "D0:3", "--tenant", "acme")
    assert code != 0 and "no session 'tampered'" in err, err + out

    # Every message, record and served context checks out; an edit behind the application's
    # back is named, with an exit code (the owner's login, as a database admin would).
    code, out, err = await cli(env, "verify", "life", "--tenant", "acme")
    assert code == 0 and "verified 60 messages, 2 ledger records, " in out, err + out
    await db.execute("UPDATE messages SET content = 'edited' WHERE tenant = 'acme' AND "
                     "session = 'copy' AND id = 'D0:3'")
    code, out, err = await cli(env, "verify", "copy", "--tenant", "acme", "--no-served")
    assert code == 1, err + out
    assert "message D0:3: turn 4: its content no longer gives the digest" in out, out
    assert "record c1: the messages it covered do not give its covered hash (changed: " \
        "D0:3)" in out, out
    code, out, err = await cli(env, "verify", "copy", "--tenant", "acme", "--json")
    assert code == 1 and json.loads(out)["findings"][0]["ident"] == "D0:3", err + out


async def test_a_compact_that_would_grow_the_window_says_so_and_commits_nothing(
    env: dict[str, str], worker: Worker, tmp_path: Path
) -> None:
    source = tmp_path / "tiny.jsonl"
    source.write_text("".join(json.dumps({"id": f"0c9a1b2e-{i:04d}-4a5b-9c8d-1234567890ab",
                                          "role": "user", "content": "ok"}) + "\n"
                              for i in range(6)))
    code, _, err = await cli(env, "import", "tiny", str(source), "--tenant", "acme")
    assert code == 0, err
    code, out, err = await cli(env, "compact", "tiny", "--tenant", "acme",
                               "--preserve-recent", "1")
    assert code == 0, err
    assert "nothing compacted: compacting 5 messages would not shrink the window" in out
    code, out, _ = await cli(env, "ledger", "tiny", "--tenant", "acme")
    assert "no compactions yet in 'tiny'" in out


async def test_uncompact_with_later_undoes_the_merge_too(
    env: dict[str, str], worker: Worker, client: Client, task_queue: str, store: Store,
    embedder: LocalEmbedder,
) -> None:
    """The session is made through the client with a hierarchy of fanout 2 (a policy is fixed
    when a session starts); the CLI then refuses the undo of a merged record, naming the
    merge and --with-later's alternative, and with --with-later prints both undo records."""
    lt = Longthread(client, Settings(task_queue=task_queue),
                    CompactionPolicy(context_window=100_000, preserve_recent=4,
                                     hierarchy_fanout=2), store=store, embedder=embedder)
    conv = await lt.conversation("merged", tenant="acme")
    await conv.append_many([{"id": f"m{i}", "role": ("user", "assistant")[i % 2],
                             "content": f"{LINES[i % len(LINES)]} ({i})"} for i in range(22)])
    for _ in range(3):
        assert await conv.compact(preserve_recent=4) is not None
        await conv.append_many([{"id": f"x{len(await conv.ledger())}-{i}", "role": "user",
                                 "content": f"{LINES[i]} more"} for i in range(6)])
    merge = next(r for r in await conv.ledger() if r.merged_summary is not None)
    code, _, err = await cli(env, "uncompact", "merged", "c1", "--tenant", "acme")
    assert code == 2 and f"undo {merge.id}" in err and "with_later" in err, err
    code, out, err = await cli(env, "uncompact", "merged", "c1", "--tenant", "acme",
                               "--with-later")
    assert code == 0, err
    made = (await conv.ledger())[-2:]
    assert [r.undoes for r in made] == [merge.id, "c1"]
    assert all(f"undo of {r.undoes}" in out for r in made), out


async def test_an_import_refused_partway_says_what_is_stored(
    env: dict[str, str], worker: Worker, tmp_path: Path
) -> None:
    first = tmp_path / "first.jsonl"
    first.write_text(json.dumps({"id": "x", "role": "user", "content": "one"}) + "\n")
    code, _, err = await cli(env, "import", "part", str(first), "--tenant", "acme")
    assert code == 0, err
    second = tmp_path / "second.jsonl"
    second.write_text("\n" + "".join(json.dumps(m) + "\n" for m in (
        {"id": "p", "role": "user", "content": "two"},
        {"id": "q", "role": "assistant", "content": "three"},
        {"id": "x", "role": "user", "content": "not one"})))
    code, out, err = await cli(env, "import", "part", str(second), "--tenant", "acme",
                               "--batch", "2")
    # Found only when storing (messages[0] of the second call), named by its file line.
    assert code == 2 and "error: line 4: id: 'x' was already appended with other content" \
        in err, err
    assert "import stopped: messages 1-2 of 3 are stored; importing the file again skips them" \
        in out
    code, out, err = await cli(env, "context", "part", "--tenant", "acme", "--json")
    assert code == 0, err
    assert [m["source_ids"] for m in json.loads(out)["messages"]] == [["x"], ["p"], ["q"]]


async def test_show_prints_a_large_body_the_window_only_previews(
    env: dict[str, str], worker: Worker, tmp_path: Path
) -> None:
    """A 100 KB tool output stands in the window as a 2,000-character preview naming its id;
    `show` prints all of it, byte for byte when piped (what looks like rich markup or an emoji
    code, tabs, escape sequences and carriage returns included)."""
    body = "".join(f"[bold]row {n}[/bold]\t:memo: status=ok\x1b[31m\r\n" for n in range(3500))
    assert len(body.encode()) > 64 * 1024
    source = tmp_path / "tool.jsonl"
    source.write_text("".join(json.dumps(m) + "\n" for m in (
        {"id": "u1", "role": "user", "content": "List every row."},
        {"id": "a1", "role": "assistant", "content": "",
         "tool_calls": [{"id": "call_1", "name": "rows", "arguments": "{}"}]},
        {"id": "t1", "role": "tool", "tool_call_id": "call_1", "content": body})))
    code, _, err = await cli(env, "import", "rows", str(source), "--tenant", "acme")
    assert code == 0, err
    code, out, err = await cli(env, "context", "rows", "--tenant", "acme", "--json",
                               "--max-tokens", "60000")
    assert code == 0, err
    (shown,) = [m["content"] for m in json.loads(out)["messages"] if m["role"] == "tool"]
    assert shown.endswith(f"[… {len(body.encode())} bytes in full in the archive as t1]")

    code, out, err = await cli(env, "show", "rows", "t1", "--tenant", "acme")
    assert code == 0, err
    assert out.startswith(f"t1 · tool · result of call_1 · {len(body.encode()):,} bytes\n")
    assert body in out
    code, out, err = await cli(env, "show", "rows", "a1", "t1", "--tenant", "acme", "--json")
    assert code == 0, err
    fetched = json.loads(out)
    assert [m["id"] for m in fetched] == ["a1", "t1"] and fetched[1]["content"] == body
    assert fetched[0]["tool_calls"][0]["id"] == "call_1"
    # A missing id hides nothing else: the ones found are printed, the others named (exit 2).
    code, out, err = await cli(env, "show", "rows", "t1", "t9", "--tenant", "acme")
    assert code == 2 and "no message 't9' in session 'rows'; 1 shown" in err, err
    assert out.startswith("t1 · tool · result of call_1") and body in out
    code, out, err = await cli(env, "show", "rows", "t8", "a1", "t9", "--tenant", "acme",
                               "--json")
    assert code == 2 and "no messages 't8', 't9' in session 'rows'" in err, err
    assert [m["id"] for m in json.loads(out)] == ["a1"]
    code, _, err = await cli(env, "show", "rows", "t1")  # another tenant: no such session
    assert code == 2 and "no session 'rows'" in err, err


async def test_an_export_with_large_tool_results_reimports_with_default_options(
    env: dict[str, str], worker: Worker, tmp_path: Path
) -> None:
    """Two 800 KB tool results, appended one per call, are over the 1.5 MB a call may carry
    together: the import sends them in separate calls without being told. A message no call
    could carry is refused by its line before anything is stored."""
    bodies = {f"t{n}": f"row {n} " + "y" * 800_000 for n in (1, 2)}
    rows = [{"id": "u1", "role": "user", "content": "Dump both tables."},
            {"id": "a1", "role": "assistant", "content": "", "tool_calls": [
                {"id": f"call_{n}", "name": "dump", "arguments": "{}"} for n in (1, 2)]},
            *({"id": f"t{n}", "role": "tool", "tool_call_id": f"call_{n}",
               "content": bodies[f"t{n}"]} for n in (1, 2))]
    source = tmp_path / "big.jsonl"
    source.write_text("".join(json.dumps(m) + "\n" for m in rows))
    code, out, err = await cli(env, "import", "big", str(source), "--tenant", "acme",
                               "--batch", "1")
    assert code == 0 and "4 appended" in out, err + out
    export = tmp_path / "big.export.jsonl"
    code, out, err = await cli(env, "export", "big", str(export), "--tenant", "acme")
    assert code == 0, err
    code, out, err = await cli(env, "import", "big-copy", str(export), "--tenant", "acme")
    assert code == 0 and "4 appended, 0 already present" in out, err + out
    code, out, err = await cli(env, "show", "big-copy", "t1", "t2", "--tenant", "acme",
                               "--json")
    assert code == 0, err
    assert {m["id"]: m["content"] for m in json.loads(out)} == bodies

    rows.append({"id": "u2", "role": "user", "content": "z" * 1_600_000})
    source.write_text("".join(json.dumps(m) + "\n" for m in rows))
    code, out, err = await cli(env, "import", "too-big", str(source), "--tenant", "acme")
    assert code == 2 and "error: line 5: content: its content alone is 1600000 bytes" in err, err
    assert "the limit for one message is 1500000 bytes" in err, err
    code, _, err = await cli(env, "context", "too-big", "--tenant", "acme")
    assert code == 2 and "no session 'too-big'" in err, err  # nothing stored, nothing started
    # So is a time the store would refuse, on a line past the first call's messages.
    rows[-1] = {"id": "u2", "role": "user", "content": "From the future.",
                "created_at": "9999-12-31T00:00:00Z"}
    source.write_text("".join(json.dumps(m) + "\n" for m in rows))
    code, out, err = await cli(env, "import", "future", str(source), "--tenant", "acme",
                               "--batch", "1")
    assert code == 2 and "error: line 5: created_at: 9999-12-31" in err, err
    code, _, err = await cli(env, "context", "future", "--tenant", "acme")
    assert code == 2 and "no session 'future'" in err, err


async def test_bad_input_gets_one_clear_line_and_an_exit_code(
    env: dict[str, str], worker: Worker, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a", "role": "user", "content": "ok"}\n{"id": "b", "role": \n')
    code, _, err = await cli(env, "import", "s", str(bad))
    assert code == 2 and "line 2" in err and "not valid JSON" in err
    bad.write_text('{"id": "a", "role": "user", "content": "ok"}\n'
                   '{"id": "b", "role": "robot", "content": "x"}\n')
    code, _, err = await cli(env, "import", "s", str(bad))
    assert code == 2 and "line 2: role" in err
    code, _, err = await cli(env, "import", "s", str(tmp_path / "missing.jsonl"))
    assert code == 2 and "does not exist" in err
    bad.write_text("\n")
    code, _, err = await cli(env, "import", "empty", str(bad))
    assert code == 2 and "holds no messages" in err, err
    bad.write_text('{"id": "a", "role": "user", "content": "ok"}\n')
    code, _, err = await cli(env, "import", "one", str(bad))
    assert code == 0, err
    code, _, err = await cli(env, "uncompact", "one", "")
    assert code == 2 and "record_id" in err and "Traceback" not in err, err
    for command in (["context", "nope", "-q", "x"], ["compact", "nope"], ["ledger", "nope"],
                    ["replay", "nope", "--at", "3"], ["export", "nope", str(tmp_path / "x")]):
        code, _, err = await cli(env, *command)
        assert code == 2 and "no session 'nope'" in err, (command, err)
    code, _, err = await cli(env, "context", "s", "--max-tokens", "0")
    assert code == 2
    code, _, err = await cli(env, "context", "s", "-n", "3000000")
    assert code == 2 and "--max-tokens" in err and "2000000" in err, err
    code, _, err = await cli(env, "compact", "s", "--preserve-recent", "99999999")
    assert code == 2 and "--preserve-recent" in err and "10000" in err, err
    code, _, err = await cli(env, "replay", "s", "--at", "2147483648")
    assert code == 2 and "--at" in err and "2147483647" in err, err
    for server in ("ui", "mcp"):
        code, _, err = await cli(env, server, "--port", "99999")
        assert code == 2 and "--port" in err and "65535" in err, (server, err)
    code, _, err = await cli(env, "import", "s", str(tmp_path))
    assert code == 2 and "is a directory" in err, err
    code, _, err = await cli(env, "export", "s", str(tmp_path / "no" / "x.jsonl"))
    assert code == 2 and "does not exist" in err, err
    code, _, err = await cli(env, "sessions", "--tenant", "a b")  # ids have no spaces
    assert code == 2 and "tenant" in err
    code, _, err = await cli(env, "chat", "s")
    assert code == 2 and "LONGTHREAD_CHAT_PROVIDER" in err
    code, _, err = await cli({**env, "LONGTHREAD_TEMPORAL_ADDRESS": "127.0.0.1:1"},
                             "context", "s", "-q", "x")
    assert code == 3 and "no running stack" in err
    for name in ("dev", "worker", "demo", "import", "context", "compact", "ledger",
                 "replay", "sessions", "export", "chat", "uncompact"):
        code, out, _ = await cli(env, name, "--help")
        assert code == 0 and "Usage" in out, name
