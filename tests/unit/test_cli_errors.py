"""The CLI's error lines that are built rather than passed through: bad settings named by
their environment variable, a wait to settle that a missing worker cut short (reported as
what timed out, after how long, not as the 60 s settle limit), and an undo of an undo."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import ValidationError
from temporalio.service import RPCError, RPCStatusCode

from longthread.cli_errors import (
    setting_problems,
    undo_of_undo,
    unknown_settings,
    unsettled,
)
from longthread.settings import Settings, known_variables
from memory.models import CompactionRecord


def _problems(monkeypatch: pytest.MonkeyPatch, **env: str) -> list[str]:
    for name, value in env.items():
        monkeypatch.setenv(f"LONGTHREAD_{name}", value)
    with pytest.raises(ValidationError) as info:
        Settings(_env_file=None)  # no .env: only what the test sets
    return setting_problems(info.value)


def test_each_bad_setting_names_its_variable_and_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    assert _problems(monkeypatch, CONTEXT_WINDOW="-5", EMBEDDING_DIM="0",
                     IDLE_TIMEOUT_SECONDS="never", CHAT_PROVIDER="gpt",
                     CLIENT_RETRY_SECONDS="-1", TEMPORAL_UI_PORT="x") == [
        "LONGTHREAD_TEMPORAL_UI_PORT: must be an integer (got 'x')",
        "LONGTHREAD_EMBEDDING_DIM: must be an integer from 1 to 16000 (got '0')",
        "LONGTHREAD_CHAT_PROVIDER: must be one of none, anthropic, openai (got 'gpt')",
        "LONGTHREAD_CONTEXT_WINDOW: must be an integer from 256 to 2000000 (got '-5')",
        "LONGTHREAD_IDLE_TIMEOUT_SECONDS: must be a number more than 0 (got 'never')",
        "LONGTHREAD_CLIENT_RETRY_SECONDS: must be a number at least 0 (got '-1')",
    ]


def test_a_metrics_address_is_host_and_port(monkeypatch: pytest.MonkeyPatch) -> None:
    for bad in ("nonsense", "127.0.0.1:99999", ":9464"):
        assert _problems(monkeypatch, METRICS_ADDRESS=bad) == [
            f"LONGTHREAD_METRICS_ADDRESS: must be host:port, such as 0.0.0.0:9464 (got {bad!r})"]
    for good in ("0.0.0.0:9464", "[::1]:9464", "worker-3:9000"):
        monkeypatch.setenv("LONGTHREAD_METRICS_ADDRESS", good)
        assert Settings(_env_file=None).metrics_address == good


def test_a_long_value_is_not_echoed(monkeypatch: pytest.MonkeyPatch) -> None:
    assert _problems(monkeypatch, PRESERVE_RECENT="9" * 50) == [
        "LONGTHREAD_PRESERVE_RECENT: must be an integer from 0 to 10000"]


def test_a_query_no_worker_answered_is_reported_as_such_with_its_time() -> None:
    exc = RPCError("Timeout expired", RPCStatusCode.CANCELLED, b"")
    assert unsettled("s1", exc, 29.6, 60.0, "longthread") == (
        "'s1': no worker answered its status query (Timeout expired after 30 s); is a worker "
        "polling task queue 'longthread'?")


def test_a_busy_worker_is_reported_against_the_settle_limit() -> None:
    assert unsettled("s1", TimeoutError(), 60.0, 60.0, "q") == (
        "'s1' did not settle within 60 s: its worker is still embedding or compacting, or "
        "stopped answering.")


def _record(record_id: str, trigger: str, undoes: str | None = None) -> CompactionRecord:
    return CompactionRecord.model_validate({
        "id": record_id, "seq": int(record_id[1:]), "at": datetime(2024, 1, 1, tzinfo=UTC),
        "trigger": trigger, "undoes": undoes, "level": "light", "action": "summarize",
        "reason": "test", "covered_ids": [], "covered_hash": "x", "strategy": "test",
        "tokens_before": 0, "tokens_after": 0})


def test_an_undo_record_is_named_as_one() -> None:
    ledger = [_record("c1", "manual"), _record("u2", "undo", "c1")]
    assert undo_of_undo("u2", ledger) == (
        "'u2' is an undo of c1, not a compaction: an undo cannot itself be undone")
    assert undo_of_undo("c1", ledger) is None
    assert undo_of_undo("u9", ledger) is None


ROOT = Path(__file__).resolve().parents[2]
# Where code reads a LONGTHREAD_* variable itself, rather than through `Settings`.
READS = re.compile(r"""(?:environ\.get\(|environ\[|getenv\(|setenv\(|envvar=)\s*"""
                   r"""["'](LONGTHREAD_[A-Z0-9_]+)""")


def test_every_variable_the_code_reads_is_known_to_the_typo_check() -> None:
    """A LONGTHREAD_* name some code reads must never be refused as a misspelled setting:
    add it to `longthread.settings.OTHER_VARIABLES` (or make it a setting)."""
    files = [path for folder in ("longthread", "worker", "activities", "memory", "workflows",
                                 "tests", "bench") for path in (ROOT / folder).rglob("*.py")]
    files += [ROOT / "Makefile", ROOT / "docker-compose.yml", *(ROOT / ".ci").iterdir()]
    read = {name for path in files if path.is_file()
            for name in READS.findall(path.read_text(errors="replace"))}
    assert "LONGTHREAD_MODEL_CACHE" in read and "LONGTHREAD_UI_TOKEN" in read  # it finds them
    assert read - known_variables() == set()


def test_unknown_names_get_the_nearest_setting_or_none(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("LONGTHREAD_SUMARIZER=openai\nLONGTHREAD_UI_TOKEN=abc\n")
    assert unknown_settings({"LONGTHREAD_TEMPORL_ADDRESS": "x", "LONGTHREAD_LOCOMO": "f",
                             "LONGTHREAD_REPLAY_EXAMPLES": "5", "LONGTHREAD_ZZZ": "",
                             "LONGTHREAD_DATABASE_URL": "u", "OTHER": "1"},
                            tmp_path / ".env") == [
        "LONGTHREAD_SUMARIZER: not a longthread setting (in .env; did you mean "
        "LONGTHREAD_SUMMARIZER?)",
        "LONGTHREAD_TEMPORL_ADDRESS: not a longthread setting (did you mean "
        "LONGTHREAD_TEMPORAL_ADDRESS?)",
        "LONGTHREAD_ZZZ: not a longthread setting (see .env.example for every setting)"]
    assert unknown_settings({}, tmp_path / "missing.env") == []


async def test_the_client_refuses_a_misspelled_setting_before_connecting(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """`Longthread.connect()` with the environment's settings refuses what the CLI refuses: a
    misspelled address would else run against the default (session 24 left the client out).
    It fails before any connection (nothing listens at the address it would have used)."""
    from longthread.client import Longthread
    from memory.errors import InvalidInputError

    typo = "LONGTHREAD_TEMPORL_ADDRESS"  # a name, not a literal: the scan above reads those
    monkeypatch.chdir(tmp_path)  # no .env here
    monkeypatch.setenv(typo, "10.0.0.9:7233")
    monkeypatch.setenv("LONGTHREAD_TEMPORAL_ADDRESS", "127.0.0.1:1")
    with pytest.raises(InvalidInputError) as refused:
        await Longthread.connect()
    assert str(refused.value) == ("LONGTHREAD_TEMPORL_ADDRESS: not a longthread setting (did you "
                                  "mean LONGTHREAD_TEMPORAL_ADDRESS?)")
    monkeypatch.delenv(typo)
    # A name like no setting (one a newer version may read) is logged, not refused.
    unknown = "LONGTHREAD_QQQ_FEATURE"
    monkeypatch.setenv(unknown, "1")
    # Without the typo the check passes and it tries to connect.
    with pytest.raises(ConnectionError, match=re.escape("127.0.0.1:1")):
        await Longthread.connect()
    assert f"{unknown}: not a longthread setting" in caplog.text


def test_database_urls_libpq_reads_are_not_refused() -> None:
    """The URL check refuses only what libpq would misread: a socket directory with an '@'
    (a Jenkins 'job@2' workspace), IPv6, several hosts and keyword strings pass."""
    from longthread.settings import database_url_problem

    for url in ("postgresql://u@/db?host=/tmp/a@b", "host=/srv/jenkins/job@2/pg dbname=x",
                "postgresql://app:p%40ss@[::1]:5432/db", "postgresql://h1:5432,h2:5433/db",
                "user=a password=x@y host=h", "postgresql:///db?host=/tmp"):
        assert database_url_problem(url) is None, url
    for url in ("postgresql://app:s3/cret@localhost/db", "postgres://a:b@c@h/db",
                "postgresql://app:Pa55%zz@h/db", "postgresql://app:a#b@c@db/app",
                "postgresql://app:p@ss?host=x@db/app"):
        assert database_url_problem(url), url
