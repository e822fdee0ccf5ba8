"""Every file the code reads at run time ships in the wheel.

`make test` runs from an editable install, which reads the source tree, so a data file that
`[tool.setuptools.package-data]` does not name passes every other test and is missing from
the Docker image (`pip install .`): the migrations, the audit page's templates, the demo's
conversation. This checks the configuration against the tree instead of building a wheel.
"""

from __future__ import annotations

import tomllib
from fnmatch import fnmatch
from pathlib import Path

import pytest

from memory.store.migrations import MIGRATIONS, _load

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("longthread", "memory", "activities", "workflows", "worker")


def _package_of(path: Path) -> Path:
    """The nearest directory above `path` that is a regular package (has __init__.py)."""
    for parent in path.parents:
        if (parent / "__init__.py").exists():
            return parent
    raise AssertionError(f"{path} is in no package")


def _data_files() -> list[Path]:
    return sorted(p for name in PACKAGES for p in (ROOT / name).rglob("*")
                  if p.is_file() and p.suffix not in {".py", ".pyc"}
                  and "__pycache__" not in p.parts)


def test_every_data_file_is_package_data() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns: dict[str, list[str]] = config["tool"]["setuptools"]["package-data"]
    files = _data_files()
    assert any(p.suffix == ".sql" for p in files)  # the check sees the migrations
    missing = []
    for path in files:
        package = _package_of(path)
        dotted = ".".join(package.relative_to(ROOT).parts)
        inside = path.relative_to(package).as_posix()
        if not any(fnmatch(inside, glob) for glob in patterns.get(dotted, [])):
            missing.append(f"{dotted}: {inside}")
    assert not missing, f"not in [tool.setuptools.package-data]: {missing}"


def test_migrations_are_numbered_files_in_order() -> None:
    scripts = sorted((ROOT / "memory/store/sql").glob("*.sql"))
    assert [int(p.name.split("_", 1)[0]) for p in scripts] == list(
        range(1, len(MIGRATIONS) + 1))
    assert "CREATE TABLE messages" in MIGRATIONS[0].as_string(None)  # version 1 is the first file


def test_a_gap_in_the_numbers_is_refused(tmp_path: Path) -> None:
    (tmp_path / "sql").mkdir()
    (tmp_path / "sql" / "01_first.sql").write_text("SELECT 1;\n")
    (tmp_path / "sql" / "03_later.sql").write_text("SELECT 3;\n")
    with pytest.raises(RuntimeError, match=r"numbered \[1, 3\]"):
        _load(tmp_path / "sql")
