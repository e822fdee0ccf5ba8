"""What counts as a fact in a sentence, for the extractive pass: its content terms without
words of address and reaction, the clauses a long sentence may be quoted by, and how much
covering each term is worth (names, numbers, dates and the caller's focus weigh more)."""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import NamedTuple

from memory.text import VersionRule, terms

__all__ = ["FOCUS", "FORM_WORDS", "LONG_SENTENCE", "MIN_CLAUSE_TERMS", "REPEATED_FORM", "SPECIFIC",
           "Boilerplate", "boilerplate", "clauses", "engine13_on", "engine14_on", "fact_bonus",
           "fact_terms", "form_of", "summary_rules", "term_weights"]

_NUMBER = re.compile(r"\d")
_DATE = re.compile(
    r"\b(\d{4}-\d{2}-\d{2}|jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec|monday|tuesday|"
    r"wednesday|thursday|friday|saturday|sunday|yesterday|tomorrow|today|week|month|year)\w*\b",
    re.IGNORECASE,
)
_NAME = re.compile(r"(?<![.!?]\s)(?<!^)\b[A-Z][a-z]+")
_DATE_TERMS = frozenset(
    """january february march april may june july august september october november december
    jan feb mar apr jun jul aug sep sept oct nov dec monday tuesday wednesday thursday friday
    saturday sunday yesterday tomorrow today tonight weekend weekends week weeks month months
    year years ago""".split())
# Clause boundaries a quote may be cut at: after , ; : around a dash, before a conjunction.
_CLAUSE_END = re.compile(
    r"[,;:](?=\s)|\s[-–—]+\s|\s(?=(?:and|but|so|because|which|when|while)\s)")
# Words of address and reaction, not of fact: "Thanks, Mell!", "Wow, Melanie!", "Yep,
# Caroline." Without this, such a line is short and its rare name weighs as a specific fact, so
# it won the greedy's weight per token: 28% of the lines of extractive summaries over LoCoMo
# spans had two content terms or fewer, nearly all of them greetings and cheers.
_PHATIC = frozenset(
    """hi hey hello hiya yo bye goodbye thanks thank thx congrats congratulations cheers wow
    whoa oh ooh aw aww yay yeah yep yup yes nope ok okay sure cool nice great awesome amazing
    wonderful fantastic lovely glad absolutely definitely totally haha lol omg gosh""".split())
# A name addressed, not talked about: right after a greeting or thanks at the start of a
# sentence ("Hey Mel!", "Thanks Caroline,"); or, when it is (the start of) a speaker's name in
# the span, right after a reaction ("Wow Mel!") or set off by a comma at the sentence's start
# or end ("..., Mel!" from Melanie). "Oh Paris is lovely" and "Paris, France." keep their
# names.
_GREETINGS = ("hi", "hey", "hello", "hiya", "yo", "dear", "bye", "goodbye", "thanks", "thank you",
              "thx", "congrats", "congratulations", "cheers")


def _opening(words: Sequence[str]) -> str:
    return (r"^(?:(?i:" + "|".join(sorted(words, key=len, reverse=True))
            + r")\b[\s,!.]*)+([A-Z][a-z]+)\b")


_GREETED = re.compile(_opening(_GREETINGS))
_SPEAKER_NAMED = (re.compile(_opening(sorted(_PHATIC))),
                  re.compile(r"^([A-Z][a-z]+),\s"),
                  re.compile(r",\s*([A-Z][a-z]+)\s*[.!?]*\s*$"))


def fact_terms(sentence: str, speakers: frozenset[str] = frozenset()) -> list[str]:
    """The content terms a quote would cover: `terms` without words of address or reaction,
    and without a name used to address someone (`speakers`: the span's speaker names, in
    lower case). The quote itself stays verbatim."""
    text = _GREETED.sub(" ", sentence)
    for pattern in _SPEAKER_NAMED:
        found = pattern.search(text)
        if found and any(s.startswith(found[1].lower()[:3]) for s in speakers):
            text = text[: found.start()] + " " + text[found.end():]
    return [t for t in terms(text) if t not in _PHATIC]


LONG_SENTENCE = 8  # words: longer sentences may also be quoted by one of their clauses
MIN_CLAUSE_TERMS = 2  # a clause quoted alone carries at least this many content terms
SPECIFIC = 4.0  # weight factor of a name, a number or a date term (extractive.GAIN_EXPONENT)
FOCUS = 3 * SPECIFIC  # a focus term: what the caller asked for outweighs specificity
# A sentence whose form (`form_of`) recurs this often in a span is boilerplate: a log line, a
# status line, a reply macro. Twice is not enough: "I had 2 dogs" then "I have 3 dogs" is a
# fact and its update. Nor is a form of fewer than FORM_WORDS words: "84721.", "ABC123" and
# "My order is X" are short answers, each a fact, not lines of one template.
REPEATED_FORM = 3
FORM_WORDS = 3
# An ASCII word (a maximal run of [A-Za-z0-9_]); `form_of` masks those holding a digit. Matched
# run by run and tested for a digit: the single pattern `[A-Za-z0-9_]*[0-9][A-Za-z0-9_]*` (the
# same replacements) backtracked over each start of a long run without a digit, 21 s for a
# 64,000-letter word, stalling a compaction (a review's finding).
_WORD = re.compile(r"[A-Za-z0-9_]+")
_DIGIT = re.compile(r"[0-9]")
_LINE = "\x1f"  # starts a boilerplate line's term (`boilerplate`): no word `terms` finds has it


def form_of(sentence: str) -> tuple[str, ...]:
    """A sentence's form: its terms with every ASCII word holding a digit (a count, an id, a
    hex request id, a time's parts) read as one zero, so "batch 7365 ok in 65 ms" and "batch
    12 ok in 9 ms" share one. Masked in the text, not in its terms: a one-digit number is no
    term, and "queue=9" beside "queue=45" made two forms of one line. ASCII words only: a
    CJK run is one word with the number inside it."""
    return tuple(terms(_WORD.sub(lambda w: "0" if _DIGIT.search(w[0]) else w[0], sentence)))


# Whether engine 13's rules hold: boilerplate's numbers are slots (`term_weights`), and a
# sentence quoted by a clause may be quoted whole instead (`memory.extractive`). Compaction
# always follows them; an older assembly version's condensing of the hierarchy does not, so
# its windows replay byte for byte (set by `memory.assembly`, as `memory.text.text_rules`).
_ENGINE13 = VersionRule("longthread_summary_engine13")


# Whether engine 14's rules hold (compaction always; assembly from version 19, as above):
# - a tool's sentence whose form recurs is boilerplate however short (`boilerplate`), in a
#   leaf summary and in a merge, which knows a summary's tool lines (`- [id] tool: …`) by
#   their speaker: a level-2 merge of a support ticket quoted 28 `"ts": …` timestamp lines of
#   tracking lookups and none of the refund, its reference or the return authorisation its
#   level-1 summary held (a user test's finding). Their numbers still weigh as a person's in
#   a merge: read as tool output there (no number specific), a log's rare error lines lost
#   to the rest (`bench/salience.py`: 75 of 328 planted ids carried, against 97);
# - a clause quoted alone names something besides numbers and dates (`clauses`): "October 30",
#   "and November 16." stood in summaries for sentences that said what fell on those days.
_ENGINE14 = VersionRule("longthread_summary_engine14")


@contextmanager
def summary_rules(engine13: bool, engine14: bool = True) -> Iterator[None]:
    with _ENGINE13.only(engine13), _ENGINE14.only(engine14):
        yield


def engine13_on() -> bool:
    return _ENGINE13.on()


def engine14_on() -> bool:
    return _ENGINE14.on()


def fact_bonus(sentence: str) -> float:
    """The previous scorer's bonus for names, numbers and dates (bench/speed.py's baseline
    still uses it); the coverage weights below replace it."""
    bonus = 0.0
    if _NUMBER.search(sentence):
        bonus += 0.15
    if _DATE.search(sentence):
        bonus += 0.1
    if _NAME.search(sentence):
        bonus += 0.1
    return bonus


def clauses(sentence: str) -> list[str]:
    """Verbatim clauses of a sentence of more than LONG_SENTENCE words, worth quoting alone:
    cut at clause punctuation (left out) and before conjunctions; at least MIN_CLAUSE_TERMS
    content terms each, and from engine 14 one that is neither a number nor a date. A short
    sentence has none."""
    if sentence.count(" ") + 1 <= LONG_SENTENCE:
        return []
    cuts = [0, *(m.start() for m in _CLAUSE_END.finditer(sentence)), len(sentence)]
    named = _ENGINE14.on()
    out = [text for k in range(len(cuts) - 1)
           if (text := sentence[cuts[k]: cuts[k + 1]].strip(" ,;:-–—"))
           and text != sentence and len(found := terms(text)) >= MIN_CLAUSE_TERMS
           and (not named or any(not _NUMBER.search(t) and t not in _DATE_TERMS
                                 for t in found))]
    return list(dict.fromkeys(out))


class Boilerplate(NamedTuple):
    """What `boilerplate` finds: the slots (numbers said only in lines of a form said
    REPEATED_FORM times or more), and for each sentence of such a form the term that stands
    for its line (its form and its numbers), else None."""

    slots: frozenset[str]
    lines: tuple[str | None, ...]
    times: tuple[int, ...]  # how often each sentence's form is said in the span
    numbers: tuple[tuple[str, ...], ...]  # each sentence's terms with digits


def boilerplate(docs: Sequence[Sequence[str]], forms: Sequence[tuple[str, ...]],
                focus: Sequence[str] = (), tooled: Sequence[bool] = ()) -> Boilerplate | None:
    """The span's boilerplate by its sentences' forms (`form_of`), or None under the rules
    before engine 13 (`summary_rules`) or without forms. A number the caller's `focus` names
    is never a slot: it is what was asked for. From engine 14 a tool's sentence (`tooled`) is
    boilerplate at any length when its form recurs: FORM_WORDS keeps a person's short answers
    facts, but a tool's `"ts": "2026-10-22T16:53:14Z",` said 28 times is one field of a
    record it returns on every call."""
    if not forms or not _ENGINE13.on():
        return None
    said = Counter(forms)
    numbered = [tuple(t for t in doc if _NUMBER.search(t)) for doc in docs]
    fields = _ENGINE14.on()
    repeated = [said[form] >= REPEATED_FORM and (len(form) >= FORM_WORDS or (
        fields and k < len(tooled) and tooled[k])) for k, form in enumerate(forms)]
    elsewhere = {t for k, numbers in enumerate(numbered) if not repeated[k] for t in numbers}
    elsewhere.update(focus)
    slots = frozenset(t for k, numbers in enumerate(numbered) if repeated[k]
                      for t in numbers) - elsewhere
    lines = tuple(_LINE + " ".join(forms[k]) + _LINE + " ".join(numbers)
                  if repeated[k] and numbers else None for k, numbers in enumerate(numbered))
    return Boilerplate(slots, lines, tuple(said[form] for form in forms), tuple(numbered))


def term_weights(docs: Sequence[Sequence[str]], texts: Sequence[str],
                 focus: Sequence[str] = (), machine: Sequence[bool] = (),
                 plate: Boilerplate | None = None) -> dict[str, float]:
    """How much covering each term is worth: log(1 + N/df) over the N sentences, times
    SPECIFIC for names (capitalised inside some sentence), numbers and dates, times FOCUS for
    the focus's terms.

    A number counts as specific only where a person or the model said it: `machine[i]` marks
    the sentences of tool results, whose numbers are mostly timestamps, counters and ids that
    change on every call. Each repeat of a status lookup brought new ones, so repeated tool
    output filled extractive summaries (27 of 36 lines in a support ticket's) and pushed out
    what people said (a user test's finding).

    Nor is a number said only in boilerplate (`plate`, engine 13) a fact of its own: it is a
    slot, worth nothing alone, and its line is worth what its form's rarity is, log(1 +
    N/times the form was said), as one term (`Boilerplate.lines`: a repeated line is worth
    nothing again). Each of a log's "INFO processed batch N ok" lines brought unique,
    maximally rare numbers (a timestamp, a batch, a duration), so a summary of a pasted log
    quoted 31 of them and none of the 18 rarer "ERROR ... refund issued twice" lines (a user
    test's finding); a reply macro's ticket numbers did the same to a ticket's summary."""
    n = len(docs)
    df: Counter[str] = Counter()
    for doc in docs:
        df.update(set(doc))
    said = {t for k, doc in enumerate(docs) if not (k < len(machine) and machine[k])
            for t in doc} if any(machine) else set(df)
    slots = plate.slots if plate else frozenset()
    names = {w.lower() for text in texts for w in _NAME.findall(text)}
    focus_terms = set(focus)
    weights: dict[str, float] = {}
    for term, count in df.items():
        weight = 0.0 if term in slots else math.log(1.0 + n / count)
        if term in names or (_NUMBER.search(term) and term in said) or term in _DATE_TERMS:
            weight *= SPECIFIC
        if term in focus_terms:
            weight *= FOCUS
        weights[term] = weight
    if plate is not None:
        for k, line in enumerate(plate.lines):
            if line is not None:
                weight = math.log(1.0 + n / plate.times[k])
                weights[line] = weight * FOCUS if focus_terms.intersection(
                    plate.numbers[k]) else weight
    return weights
