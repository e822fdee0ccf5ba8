"""Extractive summarization: pick the most central sentences, biased toward the caller's focus.

It cannot hallucinate (every output sentence is a substring of an input message), needs no
model, and is deterministic, which is why it is the offline default and the fallback when a
provider keeps failing. Sentences carrying names, numbers and dates get a bonus, because those
are what users complain summaries drop.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict

from memory.models import Message
from memory.text import cosine, sentences, terms, tfidf_vectors
from memory.tokens import TokenCounter, default_counter

__all__ = ["Extract", "ExtractiveSummary", "extractive_summary"]

_NUMBER = re.compile(r"\d")
_DATE = re.compile(
    r"\b(\d{4}-\d{2}-\d{2}|jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec|monday|tuesday|"
    r"wednesday|thursday|friday|saturday|sunday|yesterday|tomorrow|today|week|month|year)\w*\b",
    re.IGNORECASE,
)
_NAME = re.compile(r"(?<![.!?]\s)(?<!^)\b[A-Z][a-z]+")
_REDUNDANT = 0.8  # cosine above which a candidate repeats an already chosen sentence


class Extract(BaseModel):
    model_config = ConfigDict(frozen=True)

    message_id: str
    speaker: str
    sentence: str


class ExtractiveSummary(BaseModel):
    model_config = ConfigDict(frozen=True)

    extracts: tuple[Extract, ...]
    text: str
    tokens: int

    @property
    def quoted_ids(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(e.message_id for e in self.extracts))


def _fact_bonus(sentence: str) -> float:
    bonus = 0.0
    if _NUMBER.search(sentence):
        bonus += 0.15
    if _DATE.search(sentence):
        bonus += 0.1
    if _NAME.search(sentence):
        bonus += 0.1
    return bonus


def render_extracts(extracts: Sequence[Extract]) -> str:
    return "\n".join(f"- [{e.message_id}] {e.speaker}: {e.sentence}" for e in extracts)


def extractive_summary(
    messages: Sequence[Message],
    max_tokens: int,
    focus: str | None = None,
    counter: TokenCounter | None = None,
) -> ExtractiveSummary:
    """Choose sentences by TF-IDF degree centrality (+ focus similarity + fact bonus).

    Chosen sentences are shown in conversation order, each tagged with its message id and
    speaker, and the rendered text never exceeds `max_tokens`.
    """
    counter = counter or default_counter()
    candidates: list[Extract] = []
    for message in messages:
        if message.role == "system":
            continue
        speaker = message.name or message.role
        for sentence in sentences(message.content):
            if terms(sentence):
                candidates.append(
                    Extract(message_id=message.id, speaker=speaker, sentence=sentence))
    if not candidates:
        return ExtractiveSummary(extracts=(), text="", tokens=0)

    docs = [terms(c.sentence) for c in candidates]
    focus_terms = terms(focus) if focus else []
    vectors = tfidf_vectors([*docs, focus_terms] if focus_terms else docs)
    focus_vec = vectors.pop() if focus_terms else {}
    n = len(candidates)
    scores: list[float] = []
    for i, vec in enumerate(vectors):
        centrality = sum(cosine(vec, other) for j, other in enumerate(vectors) if j != i)
        centrality = centrality / (n - 1) if n > 1 else 1.0
        focus_score = 2.0 * cosine(vec, focus_vec) if focus_vec else 0.0
        # Short exclamations ("Wow, Caroline!") are central by accident and carry nothing.
        substance = min(1.0, len(docs[i]) / 6)
        scores.append((centrality + focus_score) * substance
                      + _fact_bonus(candidates[i].sentence))

    order = sorted(range(n), key=lambda i: (-scores[i], i))
    chosen: list[int] = []
    for i in order:
        if any(cosine(vectors[i], vectors[j]) > _REDUNDANT for j in chosen):
            continue
        trial = sorted([*chosen, i])
        if counter.count(render_extracts([candidates[k] for k in trial])) <= max_tokens:
            chosen = trial
    extracts = tuple(candidates[k] for k in chosen)
    text = render_extracts(extracts)
    return ExtractiveSummary(extracts=extracts, text=text, tokens=counter.count(text))
