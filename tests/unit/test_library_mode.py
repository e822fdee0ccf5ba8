"""Library mode (`memory.Session`) as an app keeps it for months: saved after every turn,
shared by a web server's threads, with a summarizer that can fail and tool results of
hundreds of kilobytes. Each test is a defect session 28's user test found."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from longthread.audit import fold_ledger
from memory.errors import InvalidInputError
from memory.lexical import BM25Index, bm25_scores
from memory.models import Message
from memory.policy import CompactionPolicy
from memory.session import Session
from memory.summarizer import Summarizer, SummaryResult
from memory.text import terms

ROOT = Path(__file__).resolve().parents[2]
WORDS = ("refund", "parcel", "order", "invoice", "depot", "Leeds", "express", "4711", "the")


def chat(session: Session, turns: int, start: int = 0) -> None:
    for n in range(start, start + turns):
        session.add_message("user" if n % 2 else "assistant",
                            f"Turn {n}: the parcel for order {n * 7} went via depot {n % 13}.")


SAVER = """
import sys
from memory.policy import CompactionPolicy
from memory.session import Session
session = Session.load(sys.argv[1]) if len(sys.argv) > 2 else Session("s")
n = len(session.messages)
print("ready", flush=True)
while True:
    session.add_messages([{"id": f"x{n}-{k}", "role": "user", "content": "Parcel note " * 40}
                          for k in range(50)])
    n += 50
    session.save(sys.argv[1])
"""


def test_a_process_killed_while_saving_leaves_a_session_that_loads(tmp_path: Path) -> None:
    """`save` wrote in place: a kill mid-write left an empty or cut-off file."""
    path = tmp_path / "chat.json"
    session = Session("s", policy=CompactionPolicy(context_window=4000))
    chat(session, 2000)
    session.save(path)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    counts = [len(session.messages)]
    for kill in range(6):
        proc = subprocess.Popen([sys.executable, "-c", SAVER, str(path), "again"],
                                stdout=subprocess.PIPE, env=env, text=True)
        assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
        time.sleep(0.3 + 0.17 * kill)  # mid-save, at a different point each time
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        counts.append(len(Session.load(path).messages))  # the old save or the new: whole
    assert counts == sorted(counts) and counts[-1] > counts[0]
    left = [p for p in tmp_path.iterdir() if p.name != "chat.json"]
    assert all(p.name.startswith(".chat.json.") and p.name.endswith(".tmp") for p in left)
    for leftover in left:  # a killed save's temporary file: the next load sweeps it
        os.utime(leftover, (time.time() - 120, time.time() - 120))
    Session.load(path)
    assert [p.name for p in tmp_path.iterdir()] == ["chat.json"]


def test_a_save_writes_through_a_link_keeps_the_mode_and_sweeps_only_its_own(
        tmp_path: Path) -> None:
    real, link = tmp_path / "real.json", tmp_path / "chat.json"
    session = Session("s")
    chat(session, 3)
    session.save(real)
    real.chmod(0o640)
    link.symlink_to(real)
    chat(session, 3, start=3)
    session.save(link)
    assert link.is_symlink() and len(Session.load(real).messages) == 6
    assert real.stat().st_mode & 0o777 == 0o640
    theirs = [tmp_path / ".real.json.backup.tmp", tmp_path / ".real.json.abcdefgh.tmp.keep"]
    (tmp_path / ".real.json.cache1234.tmp").mkdir()  # a directory of that shape: not ours
    for other in theirs:
        other.write_text("mine")
    stale = tmp_path / ".real.json.ab_12xyz.tmp"  # what mkstemp makes: a killed save's
    stale.write_text("{")
    for old in (*theirs, stale, tmp_path / ".real.json.cache1234.tmp"):
        os.utime(old, (time.time() - 120, time.time() - 120))
    assert len(Session.load(link).messages) == 6
    assert not stale.exists() and all(other.exists() for other in theirs)


def test_a_session_saved_before_the_id_rule_still_loads(tmp_path: Path) -> None:
    path = tmp_path / "chat.json"
    Session("s").save(path)
    path.write_text(path.read_text().replace('"session_id": "s"', '"session_id": "my chat"'))
    assert Session.load(path).session_id == "my chat"


def test_a_save_that_fails_part_way_keeps_the_last_one(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "chat.json"
    session = Session("s")
    chat(session, 10)
    session.save(path)
    before = path.read_bytes()
    chat(session, 10, start=10)

    def disk_full(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(OSError):
        session.save(path)
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["chat.json"]


@pytest.mark.parametrize(("content", "problem"), [
    (json.dumps({"name": "my-app", "version": "1.0.0"}), "format"),
    ("{}", "format"),
    (None, "format"),  # a session saved by a newer longthread: format 2
    (b"\xff\xfe{}", "Invalid JSON"),
])
def test_a_file_that_is_no_saved_session_is_refused_by_name(
        tmp_path: Path, content: str | bytes | None, problem: str) -> None:
    path = tmp_path / "chat.json"
    if content is None:
        Session("s").save(path)
        content = path.read_text().replace('"format": 1', '"format": 2')
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(InvalidInputError) as caught:
        Session.load(path)
    assert caught.value.field == str(path) and problem in caught.value.problem


def test_a_tampered_or_inconsistent_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "chat.json"
    session = Session("s", auto_compact=False)
    chat(session, 4)
    session.save(path)
    saved = json.loads(path.read_text())
    twice = {**saved, "messages": [*saved["messages"], {**saved["messages"][0],
                                                        "content": "I never said this."}]}
    tampered = {**saved, "messages": [{**saved["messages"][0], "content": "Changed."},
                                      *saved["messages"][1:]]}
    missing = {**saved, "messages": saved["messages"][1:]}
    shown_twice = {**saved, "window": {**saved["window"], "messages": [
        *saved["window"]["messages"], saved["window"]["messages"][0]]}}
    for data, problem in ((twice, "twice"), (tampered, "differs"), (missing, "not among"),
                          (shown_twice, "window.messages[4]")):
        path.write_text(json.dumps(data))
        with pytest.raises(InvalidInputError) as caught:
            Session.load(path)
        assert problem in caught.value.problem


def test_threads_sharing_a_session_lose_nothing() -> None:
    """Four threads adding turns and asking for windows: every message stays reachable, the
    ledger's ids are unique, and it rebuilds the window."""
    session = Session("shared", policy=CompactionPolicy(context_window=600, preserve_recent=3))
    errors: list[BaseException] = []

    def worker(k: int) -> None:
        try:
            for n in range(150):  # no ids: each gets the next free one, under the lock
                session.add_message("user", f"Thread {k} note {n}: depot {n % 9}.")
                if n % 25 == 0:
                    session.get_context(query=f"depot {n % 9}", max_tokens=300)
        except BaseException as exc:  # reported below, not lost in the thread
            errors.append(exc)

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as the interpreter can
    try:
        threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(interval)
    assert not errors, errors[:3]
    assert len(session.messages) == 600 and len(session.ledger) > 5
    ids = [r.id for r in session.ledger]
    assert len(ids) == len(set(ids))
    in_window = {m.id for m in session.window.messages}
    covered = {i for s in session.window.summaries for i in s.covers} | {
        i for r in session.ledger if r.summary is None for i in r.covered_ids}
    assert {m.id for m in session.messages} <= in_window | covered
    assert fold_ledger(session.messages, session.ledger) == session.window


class Outage(Summarizer):
    name = "flaky-llm"

    def summarize(self, messages: Sequence[Message], max_tokens: int,
                  focus: str | None = None) -> SummaryResult:
        raise ConnectionError("api.example.com: connection refused")


def test_a_failing_summarizer_falls_back_to_extractive_and_says_so() -> None:
    """Raising after the message was stored made an app's retry store it again."""
    session = Session("s", policy=CompactionPolicy(context_window=600, preserve_recent=3),
                      summarizer=Outage())
    chat(session, 200)
    assert len(session.messages) == 200 and session.get_token_estimate() < 600
    summarized = [r for r in session.ledger if r.summary is not None]
    assert summarized and all(r.strategy.startswith("extractive") for r in summarized)
    assert all(r.fallback is not None and "flaky-llm failed (ConnectionError: api.example.com"
               in r.fallback for r in summarized)


def test_a_large_tool_result_stands_as_a_preview_and_keeps_its_turn() -> None:
    """A 400 KB result counted 100,000 tokens in library mode and pushed its own question
    out of every window; the durable window holds it as a preview."""
    session = Session("s", policy=CompactionPolicy(context_window=8000))
    log = "".join(f"line {n}: request {n} answered 200\n" for n in range(12_000))  # ~400 KB
    session.add_messages([
        {"id": "q", "role": "user", "content": "Why did the deploy fail?"},
        {"id": "c", "role": "assistant", "tool_calls": [
            {"id": "t1", "name": "logs", "arguments": "{}"}]},
        {"id": "r", "role": "tool", "tool_call_id": "t1", "content": log},
        {"id": "a", "role": "assistant", "content": "The log is long."}])
    assert session.get_token_estimate() < 2000  # the preview, not the body
    window = session.get_context(max_tokens=8000)
    assert [m.source_ids for m in window.messages] == [("q",), ("c",), ("r",), ("a",)]
    (shown,) = [m for m in window.messages if m.role == "tool"]
    assert "in full in the archive as r" in shown.content and window.tokens <= 8000
    assert session.messages[2].content == log  # the archive keeps it whole
    wide = session.get_context(max_tokens=300_000)
    assert any(m.content == log for m in wide.messages)  # whole when there is room


def test_small_misuses_get_named_errors() -> None:
    for bad in (123, "", "two words", "zero\u200bwidth"):
        with pytest.raises(InvalidInputError) as caught:
            Session(bad)  # type: ignore[arg-type]
        assert caught.value.field == "session_id"
    session = Session("s", auto_compact=False)
    chat(session, 12)
    with pytest.raises(InvalidInputError) as caught:
        session.compact(preserve_recent="3")  # type: ignore[arg-type]
    assert caught.value.field == "preserve_recent"
    record = session.compact(preserve_recent=2)
    assert record is not None and record.at is not None  # when it was summarized away
    undo = session.uncompact(record.id)
    assert undo.at is not None
    with pytest.raises(InvalidInputError) as refused:
        session.uncompact(undo.id)
    assert refused.value.field == "record_id" and f"is an undo of {record.id}" in str(
        refused.value)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(st.sampled_from(WORDS), max_size=12).map(" ".join), max_size=30),
       st.lists(st.sampled_from(WORDS), min_size=1, max_size=4).map(" ".join))
def test_the_incremental_index_scores_as_bm25_does(docs: list[str], query: str) -> None:
    """The same floats as Okapi BM25 computed in one pass, as `bm25_scores` did before it
    was built on the index (the reference below is that code)."""
    index = BM25Index()
    for doc in docs:
        index.add(doc)
    expected = _one_pass_bm25(query, docs)
    got: dict[int, float] = index.scores(query)
    assert {i: s for i, s in enumerate(expected) if s > 0} == got
    assert bm25_scores(query, docs) == expected


def _one_pass_bm25(query: str, docs: list[str], k1: float = 1.5, b: float = 0.75
                   ) -> list[float]:
    tokenized = [terms(d) for d in docs]
    q = terms(query)
    n = len(docs)
    if not n or not q:
        return [0.0] * n
    avg = sum(len(t) for t in tokenized) / n or 1.0
    df: Counter[str] = Counter()
    for t in tokenized:
        df.update(set(t))
    scores: list[float] = []
    for t in tokenized:
        tf = Counter(t)
        score = 0.0
        for term in q:
            if term in tf:
                idf = math.log(1 + (n - df[term] + 0.5) / (df[term] + 0.5))
                f = tf[term]
                score += idf * f * (k1 + 1) / (f + k1 * (1 - b + b * len(t) / avg))
        scores.append(score)
    return scores


def test_a_ledger_or_summary_that_names_what_is_not_there_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "chat.json"
    session = Session("s", auto_compact=False)
    chat(session, 12)
    assert session.compact(preserve_recent=2) is not None
    session.save(path)
    saved = json.loads(path.read_text())
    ledger_twice = {**saved, "ledger": [*saved["ledger"], saved["ledger"][0]]}
    summary = saved["window"]["summaries"][0]
    unknown = {**saved, "window": {**saved["window"], "summaries": [
        {**summary, "covers": [*summary["covers"], "m999"]}]}}
    for data, problem in ((ledger_twice, "ledger[1]"), (unknown, "'m999'")):
        path.write_text(json.dumps(data))
        with pytest.raises(InvalidInputError) as caught:
            Session.load(path)
        assert problem in caught.value.problem
