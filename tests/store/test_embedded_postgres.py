"""The embedded Postgres is sized for the archive (its page cache, not pgserver's 128 MB), and
only its own user reaches it (its logins are trusted)."""

from __future__ import annotations

import os
import pwd
import stat
import subprocess
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

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


def test_other_local_users_cannot_connect(tmp_path: Path) -> None:
    """pgserver trusts every login on its socket. The socket sits in the data dir (mode 0700)
    unless that path is too long for a socket, as here; then it goes to a shared directory
    open to all, and any account on the machine connected as the superuser. Now the socket
    itself is the server's user's."""
    postgres = EmbeddedPostgres(tmp_path / ("long-" * 16) / "pg")
    try:
        url = postgres.start()
        query = parse_qs(urlsplit(url).query)
        sockets = list(Path(query["host"][0]).glob(".s.PGSQL.*"))
        assert sockets, url
        assert stat.S_IMODE(sockets[0].stat().st_mode) & 0o077 == 0
        if os.geteuid() == 0:  # CI runs as root: try it as another account too
            # pgserver's own psql: the account Postgres runs as can run it, so nobody can too.
            nobody = pwd.getpwnam("nobody")
            probe = subprocess.run(
                [str(postgres.server.bin_path / "psql"), "-h", query["host"][0], "-U", "postgres",
                 "-d", "postgres", "-c", "SELECT 1"],
                user=nobody.pw_uid, group=nobody.pw_gid, capture_output=True, text=True,
                cwd="/", timeout=60)
            assert probe.returncode != 0
            assert "Permission denied" in probe.stderr, probe.stderr[-500:]
    finally:
        postgres.stop()
