"""No Docker engine runs here, so the compose file is checked without one: against the Compose
Specification's JSON schema (as vendored, offline, by check-jsonschema), then for what the schema
cannot know (the services, images and settings longthread needs)."""

from __future__ import annotations

import copy
import json
import re
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from worker.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def _compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return data


def _compose_spec_errors(document: dict[str, Any]) -> list[str]:
    schema = json.loads(resources.files("check_jsonschema.builtin_schemas.vendor")
                        .joinpath("compose-spec.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(
        schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)
    return [f"{error.json_path}: {error.message}" for error in validator.iter_errors(document)]


def test_compose_file_is_valid_against_the_compose_specification() -> None:
    assert _compose_spec_errors(_compose()) == []


def test_compose_spec_validation_catches_mistakes() -> None:
    """The schema check is not vacuous: typical slips in a compose file are refused."""
    broken = copy.deepcopy(_compose())
    broken["services"]["worker"]["restart"] = ["always"]  # a string, not a list
    broken["services"]["worker"]["enviroment"] = {"X": "1"}  # misspelt key
    broken["services"]["worker"]["depends_on"] = {"temporal": {"condition": "service_ready"}}
    errors = _compose_spec_errors(broken)
    assert len(errors) == 3, errors
    assert any("enviroment" in error for error in errors)


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
