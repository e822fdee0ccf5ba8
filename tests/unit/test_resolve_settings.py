"""Where a client finds its stack: its settings, else the data dir of a running dev stack."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from longthread.settings import Settings, resolve_settings
from memory.errors import InvalidInputError


@pytest.fixture(autouse=True)
def no_settings_around(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Only what each test passes: no LONGTHREAD_* from the environment, no .env."""
    for name in [n for n in os.environ if n.startswith("LONGTHREAD_")]:
        monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def test_a_data_dir_with_no_running_stack_is_refused_when_it_is_all_that_says_where(
    tmp_path: Path,
) -> None:
    """ut27: a mistyped LONGTHREAD_DATA_DIR ran against the stack on 127.0.0.1:7233."""
    missing = tmp_path / "mistyped"
    with pytest.raises(InvalidInputError, match=r"^LONGTHREAD_DATA_DIR: .*mistyped does not "):
        resolve_settings(Settings(data_dir=missing))
    with pytest.raises(InvalidInputError, match=r"holds no running `longthread dev`"):
        resolve_settings(Settings(data_dir=tmp_path))  # exists, but nothing runs there
    given = resolve_settings(Settings(data_dir=missing, temporal_address="127.0.0.1:1"))
    assert given.temporal_address == "127.0.0.1:1"  # said elsewhere: the dir is not needed
    assert resolve_settings(Settings(data_dir=missing, database_url="postgresql://x/y"))


def test_a_running_stack_is_found_through_its_data_dir(tmp_path: Path) -> None:
    (tmp_path / "stack.json").write_text(json.dumps(
        {"database_url": "postgresql://dev/db", "temporal": "127.0.0.1:7999"}))
    found = resolve_settings(Settings(data_dir=tmp_path))
    assert (found.database_url, found.temporal_address) == ("postgresql://dev/db",
                                                            "127.0.0.1:7999")
