"""No Docker engine runs here, so the compose file is checked structurally instead."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from worker.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def _compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return data


def test_compose_has_the_production_services() -> None:
    services = _compose()["services"]
    assert {"temporal", "temporal-ui", "archive-db", "worker"} <= set(services)
    assert services["worker"]["build"] == "."
    assert (ROOT / "Dockerfile").exists()
    for name, service in services.items():
        for dep in service.get("depends_on", []):
            assert dep in services, f"{name} depends on unknown service {dep}"


def test_archive_postgres_has_pgvector_at_least_0_8_4() -> None:
    image = _compose()["services"]["archive-db"]["image"]
    match = re.match(r"pgvector/pgvector:(\d+)\.(\d+)\.(\d+)-pg(\d+)$", image)
    assert match, image
    assert tuple(int(x) for x in match.groups()[:3]) >= (0, 8, 4)


def test_worker_environment_names_real_settings() -> None:
    env = _compose()["services"]["worker"]["environment"]
    fields = {f"LONGTHREAD_{name.upper()}" for name in Settings.model_fields}
    assert set(env) <= fields


def test_env_example_lists_every_setting() -> None:
    listed = {line.split("=", 1)[0] for line in (ROOT / ".env.example").read_text().splitlines()
              if line and not line.startswith("#")}
    assert listed == {f"LONGTHREAD_{name.upper()}" for name in Settings.model_fields}
