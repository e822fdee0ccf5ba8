"""Where a client finds its stack: its settings, else the data dir of a running dev stack."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from longthread.settings import Settings, data_dir_problem, resolve_settings


@pytest.fixture(autouse=True)
def no_settings_around(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Only what each test passes: no LONGTHREAD_* from the environment, no .env."""
    for name in [n for n in os.environ if n.startswith("LONGTHREAD_")]:
        monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def test_a_data_dir_with_no_running_stack_is_a_problem_when_it_is_all_that_says_where(
    tmp_path: Path,
) -> None:
    """ut27: a mistyped LONGTHREAD_DATA_DIR ran against the stack on 127.0.0.1:7233. The
    client, the worker and health refuse to connect on such settings (`ConnectionError`:
    exit 3, as for no running stack)."""
    missing = tmp_path / "mistyped"
    problem = data_dir_problem(resolve_settings(Settings(data_dir=missing)))
    assert problem is not None and problem.startswith(
        f"LONGTHREAD_DATA_DIR {missing} does not exist: start `longthread dev --data-dir")
    problem = data_dir_problem(resolve_settings(Settings(data_dir=tmp_path)))
    assert problem is not None and "holds no running `longthread dev`" in problem
    assert data_dir_problem(Settings(data_dir=missing, temporal_address="127.0.0.1:1")) is None
    assert data_dir_problem(Settings(data_dir=missing, database_url="postgresql://x/y")) is None
    assert data_dir_problem(Settings()) is None  # the default dir: the defaults, as before


def test_a_running_stack_is_found_through_its_data_dir(tmp_path: Path) -> None:
    (tmp_path / "stack.json").write_text(json.dumps(
        {"database_url": "postgresql://dev/db", "temporal": "127.0.0.1:7999"}))
    found = resolve_settings(Settings(data_dir=tmp_path))
    assert data_dir_problem(found) is None
    assert (found.database_url, found.temporal_address) == ("postgresql://dev/db",
                                                            "127.0.0.1:7999")


def test_a_temporal_address_set_on_purpose_is_not_overwritten_by_a_local_stack(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """ut31: with a `longthread dev` running in the data dir, LONGTHREAD_TEMPORAL_ADDRESS
    naming another stack was replaced by the local one, and `compact` ran there."""
    (tmp_path / "stack.json").write_text(json.dumps(
        {"database_url": "postgresql://dev/db", "temporal": "127.0.0.1:7999"}))
    monkeypatch.setenv("LONGTHREAD_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("LONGTHREAD_TEMPORAL_ADDRESS", "10.0.0.7:7233")
    other = resolve_settings()
    # Neither the local address nor its database: they would pair with the wrong archive.
    assert (other.temporal_address, other.database_url) == ("10.0.0.7:7233", None)
    for spelled in ("127.0.0.1:7999", "localhost:7999"):  # the local one, however written
        monkeypatch.setenv("LONGTHREAD_TEMPORAL_ADDRESS", spelled)
        same = resolve_settings()
        assert (same.temporal_address, same.database_url) == ("127.0.0.1:7999",
                                                              "postgresql://dev/db")
    monkeypatch.setenv("LONGTHREAD_TEMPORAL_ADDRESS", "localhost:7998")  # another port
    assert resolve_settings().database_url is None
