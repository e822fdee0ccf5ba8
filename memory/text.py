"""Small text utilities shared by the strategies: sentences, terms, TF-IDF and cosine.

Written by hand rather than pulling in scikit-learn or nltk: the engine must stay pure,
deterministic and importable inside the workflow sandbox, and these are a few dozen lines.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime

__all__ = ["VersionRule", "cosine", "day_text", "indexed_text", "scripts_on", "sentences",
           "terms", "text_rules", "tfidf_vectors"]

# Whether words and sentences are read in every script (assembly version 17, engine 12) or as
# before them, in ASCII only: a Russian or Chinese query had no terms, so the window took it
# for "nothing to search for" and left out every retrieved turn (session 29's user test: the
# fact served 0 of 21 times for ru/ar/he/hi/ja/zh/ko queries). Assembly sets it for the version
# it renders (`text_rules`), so windows served before replay as they were served; the engine
# runs with the newest. Terms are read five calls deep (reranker, near-duplicates, condensed
# summaries), and every cache keyed by a text is keyed by this too.
class VersionRule:
    """A reading rule an older assembly version goes without: on, except within `only(False)`.
    A context variable rather than a parameter: such rules are read several calls deep, and
    concurrent assemblies of different versions each keep their own. Shared by `text_rules`
    and `memory.facts.summary_rules`."""

    def __init__(self, name: str) -> None:
        self._on: ContextVar[bool] = ContextVar(name, default=True)

    def on(self) -> bool:
        return self._on.get()

    @contextmanager
    def only(self, on: bool) -> Iterator[None]:
        token = self._on.set(on)
        try:
            yield
        finally:
            self._on.reset(token)


_SCRIPTS = VersionRule("longthread_text_scripts")


def text_rules(scripts: bool) -> AbstractContextManager[None]:
    return _SCRIPTS.only(scripts)


def scripts_on() -> bool:
    return _SCRIPTS.on()


_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")
# With scripts: also after an Arabic or Urdu question mark or full stop and a danda, and after
# a CJK full stop, which takes no space (after its closing bracket or quote, if one follows).
_SCRIPT_SENTENCE_END = re.compile(
    r"(?<=[.!?\u061f\u06d4\u0964\u0965])\s+|\n+"
    r"|(?<=[\u3002\uff01\uff1f])(?![\u300d\u300f\uff09\u3011\u3002\uff01\uff1f])\s*"
    r"|(?<=[\u3002\uff01\uff1f][\u300d\u300f\uff09\u3011])\s*")
# With scripts, neither does a day's ordinal dot before a month ("am 15. März", "den 3. juni",
# "15. května"), nor the dots of "z. B.", "d. h.", "bzw." or a title such as "Hr.", "Sra." or
# "Mme.", nor "Nr." or "ca." before a number (session 29's user test: "Der Techniker ist am
# 3." was all a summary kept). A sentence that starts with a lower-case word after a number
# still starts there ("at 5. see you then"), as before.
_SCRIPT_TITLE = re.compile(r"(?:\b(?:Hr|Hrn|Fr|Frl|Sra|Srta|Dra|Mme|Mlle|bzw|vgl|usf|ggf)"
                           r"|\b[a-z]\.\s[a-zA-Z])\.$")
_LETTER_ABBREVIATION = re.compile(r"(?<![\w.])[a-z]\.$")  # "z." of "z. B.", "d." of "d. h."
_NEXT_LETTER = re.compile(r"[a-zA-Z]\.(?:\s|$)")
_SCRIPT_NUMBERED = re.compile(r"\b(?:Nr|ca|Bd|S)\.$")
_ORDINAL = re.compile(r"(?<![\d.])\d{1,2}\.$")
_MONTHS_AFTER_ORDINAL = re.compile(  # months: de, da/no, fi, cs, pl; German small words
    r"(?i:j[aä]nner|januar|feber|februar|märz|marts|mars|april|mai|maj|juni|juli|august"
    r"|september|oktober|november|dezember|december|desember|tammikuuta|helmikuuta"
    r"|maaliskuuta|huhtikuuta|toukokuuta|kesäkuuta|heinäkuuta|elokuuta|syyskuuta|lokakuuta"
    r"|marraskuuta|joulukuuta|ledna|února|března|dubna|května|června|července|srpna|září"
    r"|října|listopadu|prosince|stycznia|lutego|marca|kwietnia|maja|czerwca|lipca|sierpnia"
    r"|września|października|listopada|grudnia"
    r"|des|der|dem|den|und|bis|oder)\b")  # "Stand 12. des Monats", "der 3. und 4. Platz"
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
    scripts = _SCRIPTS.on()
    out: list[str] = []
    start = 0
    for end in (_SCRIPT_SENTENCE_END if scripts else _SENTENCE_END).finditer(text):
        if end.start() == end.end() == start:
            continue  # an empty match right after the previous end: nothing between
        if "\n" not in end.group() and text[end.start() - 1:end.start()] == "." \
                and _goes_on(text, end.start(), end.end(), scripts):
            continue  # "Dr. Okonkwo", "No. 5", "am 15. März": the sentence goes on
        out.append(text[start:end.start()])
        start = end.end()
    out.append(text[start:])
    return [part.strip() for part in out if part.strip()]


def _goes_on(text: str, dot_end: int, next_start: int, scripts: bool) -> bool:
    """Whether the period ending at `dot_end` ends no sentence: a title's, or a number's
    abbreviation before a digit; with scripts also other languages' and a day's ordinal."""
    before = max(0, dot_end - 8)  # the longest abbreviation with its period, and a boundary
    digit = text[next_start:next_start + 1].isdigit()
    if _TITLE.search(text, before, dot_end) or (_NUMBERED.search(text, before, dot_end)
                                                and digit):
        return True
    if not scripts:
        return False
    return bool(_SCRIPT_TITLE.search(text, before, dot_end)
                or (_LETTER_ABBREVIATION.search(text, before, dot_end)
                    and _NEXT_LETTER.match(text, next_start))
                or (_SCRIPT_NUMBERED.search(text, before, dot_end) and digit)
                or (_ORDINAL.search(text, before, dot_end)
                    and _MONTHS_AFTER_ORDINAL.match(text, next_start)))


def _marks() -> str:
    """Combining marks (categories Mn, Mc, Me) below U+3000 as a character class's ranges:
    a Devanagari or Thai vowel sign is part of its word, not a break in it. Built from
    `unicodedata` rather than written out, so no block is missed."""
    ranges: list[tuple[int, int]] = []
    for code in range(0x300, 0x3000):
        if unicodedata.category(chr(code)).startswith("M"):
            if ranges and ranges[-1][1] == code - 1:
                ranges[-1] = (ranges[-1][0], code)
            else:
                ranges.append((code, code))
    return "".join(f"{chr(a)}-{chr(b)}" for a, b in ranges)


_SCRIPT_WORD = re.compile(rf"[^\W_][\w{_marks()}'-]*")
# Scripts written without spaces between words: Thai, kana, CJK ideographs, Hangul. A run of
# them is read as its overlapping character pairs (as Lucene's CJK bigram filter does), so
# "订单" is found in "我们的订单已发货" without a dictionary.
_SPACELESS = "\u0e00-\u0e7f\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff"
_SPACELESS_PARTS = re.compile(f"[{_SPACELESS}]+|[^{_SPACELESS}]+")
_IS_SPACELESS = re.compile(f"[{_SPACELESS}]")


def terms(text: str) -> list[str]:
    """A text's content words, lower case, stop words out. In ASCII (and before scripts,
    for any text) words of letters and digits; with scripts, words in any script, in NFKC
    (full-width "ＲＦ７７" is "rf77", and a name in NFD is the name), with runs of a spaceless
    script as their character pairs."""
    if text.isascii() or not _SCRIPTS.on():
        return [w for w in _WORD.findall(text.lower()) if w not in STOPWORDS and len(w) > 1]
    out: list[str] = []
    for word in _SCRIPT_WORD.findall(unicodedata.normalize("NFKC", text).lower()):
        if not _IS_SPACELESS.search(word):
            out.append(word)
            continue
        for part in _SPACELESS_PARTS.findall(word):
            if _IS_SPACELESS.match(part):
                out.extend([part] if len(part) == 1 else
                           [part[k:k + 2] for k in range(len(part) - 1)])
            elif part := part.strip("'-"):
                out.append(part)
    return [w for w in out if w not in STOPWORDS and (len(w) > 1 or _IS_SPACELESS.match(w))]


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
