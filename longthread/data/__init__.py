"""The conversations the demo plays, and the questions whose answers they hold.

`incident-inc2291.jsonl` was written for this project (Apache-2.0, like the code): a small
team at a fictional invoicing company and their ops agent through a week-long incident and its
customer follow-up, 9-16 March 2026, with tool calls and their results, decisions, and facts
that a later turn corrects. Its questions file names, for each question, every turn that states
the answer (`evidence`) and the turns that state a value later corrected (`superseded`), so a
reader can check what reached a window. LoCoMo is CC BY-NC: it is read from beside the
checkout when asked for, never shipped.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib.resources import files
from typing import Any

__all__ = ["CONVERSATION", "Question", "Script", "bundled_script", "locomo_script"]

CONVERSATION = "incident-inc2291.jsonl"


@dataclass(frozen=True)
class Question:
    question: str
    answer: str
    kind: str
    evidence: tuple[str, ...]  # every turn that states the answer
    superseded: tuple[str, ...] = ()  # turns stating the value a later turn corrected


@dataclass(frozen=True)
class Script:
    """What the demo plays: the messages, and questions whose evidence ids are known."""

    title: str
    messages: list[dict[str, Any]]
    questions: list[Question]
    checkpoint: int  # served and replayed later: what the model saw after this many turns
    checkpoint_label: str
    tenant: str = "quillmate"
    session: str = "inc-2291"


def bundled_script() -> Script:
    """The shipped conversation; its questions file names the messages that answer each one."""
    data = files("longthread.data")
    messages = [json.loads(line) for line in
                (data / CONVERSATION).read_text(encoding="utf-8").splitlines() if line.strip()]
    meta = json.loads((data / CONVERSATION.replace(".jsonl", ".questions.json"))
                      .read_text(encoding="utf-8"))
    questions = [Question(q["question"], q["answer"], q["kind"], tuple(q["evidence"]),
                          tuple(q.get("superseded", ()))) for q in meta["questions"]]
    wednesday = sum(1 for m in messages if m["created_at"] < "2026-03-12")
    return Script(meta["title"], messages, questions, wednesday, "Wednesday evening's window")


def locomo_script() -> Script:
    """LoCoMo's first conversation (from ../shared, never shipped) and three of its questions."""
    from longthread.locomo import default_path, load_samples
    from memory.errors import NotFoundError

    path = default_path()
    if not path.exists():
        raise NotFoundError(f"locomo: no file at {path} (set LONGTHREAD_LOCOMO to its path)")
    sample = load_samples(path)[0]
    picked = [q for q in sample.questions if q["category"] in (1, 2) and q["evidence"]][:3]
    return Script(f"LoCoMo {sample.sample_id} ({' & '.join(sample.speakers)})", sample.messages,
                  [Question(q["question"], str(q["answer"]), f"category {q['category']}",
                            tuple(q["evidence"])) for q in picked],
                  len(sample.messages) // 2, "the window half-way through", "demo",
                  sample.sample_id)
