"""Small text utilities shared by the strategies: sentences, terms, TF-IDF and cosine.

Written by hand rather than pulling in scikit-learn or nltk: the engine must stay pure,
deterministic and importable inside the workflow sandbox, and these are a few dozen lines.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime

__all__ = ["cosine", "day_text", "indexed_text", "sentences", "terms", "tfidf_vectors"]

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")
# A period after a title ends no sentence: "Dr. Okonkwo-Reyes" was split at "Dr." and the
# summary quoted "Okonkwo-Reyes moved the appointment" without the title (session 28's user
# test), nor does one after "No." or "Fig." before a number. Words that also end sentences
# ("etc.", "Inc.", "p.m.", a single capital as in "Plan B.") still end them.
_TITLE = re.compile(r"\b(?:Dr|Mr|Mrs|Ms|Mx|Prof|St|Mt|Gen|Col|Capt|Lt|Sgt|Rev|Hon|Gov|Sen|Rep"
                    r"|Jr|Sr|vs|e\.g|i\.e)\.$")
_NUMBERED = re.compile(r"\b(?:No|Nos|Fig|Vol|pp?)\.$")
_WORD = re.compile(r"[a-z0-9][a-z0-9'_-]*")
STOPWORDS = frozenset(
    """a about above after again against all am an and any are as at be because been before
    being below between both but by can could did do does doing down during each few for from
    further had has have having he her here hers herself him himself his how i if in into is it
    its itself just me more most my myself no nor not now of off on once only or other our ours
    ourselves out over own same she should so some such than that the their theirs them
    themselves then there these they this those through to too under until up very was we were
    what when where which while who whom why will with would you your yours yourself yourselves
    yeah yes oh wow hey hi ok okay really so that's it's i'm you're don't""".split()
)

SparseVector = dict[str, float]

_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August",
           "September", "October", "November", "December")


def day_text(created_at: datetime | None) -> str | None:
    """The day a message was sent, as the archive indexes it: "8 May 2023" (UTC; naive times
    are taken as UTC). It is Postgres's `to_char(created_at AT TIME ZONE 'UTC',
    'FMDD FMMonth YYYY')` in migration 9, so the lexical index, the embedded text and the
    benchmarks all see the same words; English month names whatever the locale."""
    if created_at is None:
        return None
    at = created_at.astimezone(UTC) if created_at.tzinfo else created_at
    return f"{at.day} {_MONTHS[at.month - 1]} {at.year:04d}"


def indexed_text(content: str, created_at: datetime | None) -> str:
    """The text a message is searched by (its embedding, and in the store its lexemes):
    the content, then its day in parentheses. Questions about time ("what did Melanie do in
    May 2023?") then meet the turns of that day in both retrieval legs."""
    day = day_text(created_at)
    return f"{content} ({day})" if day else content


def sentences(text: str) -> list[str]:
    """Sentences as exact substrings of `text` (stripped), so extracts stay verbatim."""
    out: list[str] = []
    start = 0
    for end in _SENTENCE_END.finditer(text):
        before = max(0, end.start() - 6)  # the longest title with its period, and a boundary
        if "\n" not in end.group() and (
                _TITLE.search(text, before, end.start())
                or (_NUMBERED.search(text, before, end.start())
                    and text[end.end():end.end() + 1].isdigit())):
            continue  # "Dr. Okonkwo", "No. 5": the sentence goes on
        out.append(text[start:end.start()])
        start = end.end()
    out.append(text[start:])
    return [part.strip() for part in out if part.strip()]


def terms(text: str) -> list[str]:
    return [w for w in _WORD.findall(text.lower()) if w not in STOPWORDS and len(w) > 1]


def tfidf_vectors(docs: Sequence[Sequence[str]]) -> list[SparseVector]:
    """L2-normalised TF-IDF vectors with smoothed idf; identical input gives identical floats."""
    n = len(docs)
    df: Counter[str] = Counter()
    for doc in docs:
        df.update(set(doc))
    vectors: list[SparseVector] = []
    for doc in docs:
        tf = Counter(doc)
        vec = {t: (1.0 + math.log(c)) * (math.log((1 + n) / (1 + df[t])) + 1.0)
               for t, c in tf.items()}
        norm = math.sqrt(sum(v * v for v in vec.values()))
        vectors.append({t: v / norm for t, v in sorted(vec.items())} if norm else {})
    return vectors


def cosine(a: SparseVector, b: SparseVector) -> float:
    if len(a) > len(b):
        a, b = b, a
    return sum(v * b.get(t, 0.0) for t, v in a.items())
