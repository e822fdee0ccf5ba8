"""The embedded Postgres is sized for the archive: its page cache, not pgserver's 128 MB."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from worker.stack import EmbeddedPostgres, shared_buffers_mb


def _buffers_mb(url: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT setting::bigint * 8 / 1024 FROM pg_settings"
                           " WHERE name = 'shared_buffers'").fetchone()
    assert row is not None
    return int(row[0])


def test_shared_buffers_follow_the_setting_across_restarts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LONGTHREAD_PG_SHARED_BUFFERS_MB", "192")
    postgres = EmbeddedPostgres(tmp_path / "pg")
    try:
        assert _buffers_mb(postgres.start()) == 192
    finally:
        postgres.stop()
    monkeypatch.setenv("LONGTHREAD_PG_SHARED_BUFFERS_MB", "160")  # a changed setting applies
    try:
        assert _buffers_mb(postgres.start()) == 160
    finally:
        postgres.stop()


def test_the_default_is_a_quarter_of_memory_within_bounds(
    monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("LONGTHREAD_PG_SHARED_BUFFERS_MB", raising=False)
    assert 128 <= shared_buffers_mb() <= 2048
    monkeypatch.setenv("LONGTHREAD_PG_SHARED_BUFFERS_MB", "8")
    with pytest.raises(ValueError, match="LONGTHREAD_PG_SHARED_BUFFERS_MB is 8; the least is 16"):
        shared_buffers_mb()
    monkeypatch.setenv("LONGTHREAD_PG_SHARED_BUFFERS_MB", "1GB")
    with pytest.raises(ValueError, match="LONGTHREAD_PG_SHARED_BUFFERS_MB is '1GB'; it takes a"
                                         " whole number of megabytes, at least 16"):
        shared_buffers_mb()
