"""Read LoCoMo conversations (CC BY-NC 4.0; never shipped, read from beside the checkout)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

__all__ = ["LocomoSample", "default_path", "load_samples"]


@dataclass(frozen=True)
class LocomoSample:
    sample_id: str
    speakers: tuple[str, str]
    messages: list[dict[str, Any]]  # longthread message dicts, in order, id = dia_id
    questions: list[dict[str, Any]]  # question, answer, evidence, category


def default_path() -> Path:
    env = os.environ.get("LONGTHREAD_LOCOMO")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / "shared" / "data" / "locomo" / "locomo-dev.json"


def _when(text: str) -> datetime | None:
    try:
        return datetime.strptime(text.strip(), "%I:%M %p on %d %B, %Y").replace(tzinfo=UTC)
    except ValueError:
        return None


def load_samples(path: Path | None = None) -> list[LocomoSample]:
    raw: list[dict[str, Any]] = json.loads((path or default_path()).read_text())
    samples = []
    for item in raw:
        conv = item["conversation"]
        speakers = (conv["speaker_a"], conv["speaker_b"])
        messages: list[dict[str, Any]] = []
        n = 1
        while f"session_{n}" in conv:
            when = _when(conv.get(f"session_{n}_date_time", ""))
            for turn in conv[f"session_{n}"]:
                text = turn["text"]
                if turn.get("blip_caption"):
                    text += f" [shares a photo: {turn['blip_caption']}]"
                role = "user" if turn["speaker"] == speakers[0] else "assistant"
                messages.append({"id": turn["dia_id"], "role": role, "content": text,
                                 "name": turn["speaker"],
                                 "created_at": when.isoformat() if when else None})
            n += 1
        samples.append(LocomoSample(item["sample_id"], speakers, messages, item["qa"]))
    return samples
