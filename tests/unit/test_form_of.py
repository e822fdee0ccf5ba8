"""`form_of` masks every ASCII word holding a digit, in time linear in the sentence (a review's
finding: a 64,000-letter word took 21 s, stalling the compaction that summarized it), with the
very replacements of the pattern it used before, so older windows replay."""

from __future__ import annotations

import re
import time

from hypothesis import given, settings
from hypothesis import strategies as st

from memory.facts import form_of
from memory.text import terms

BEFORE = re.compile(r"[A-Za-z0-9_]*[0-9][A-Za-z0-9_]*")


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("ab_Z09 .,-:é\"{}")), max_size=80))
def test_the_same_form_as_before(sentence: str) -> None:
    assert form_of(sentence) == tuple(terms(BEFORE.sub("0", sentence)))


def test_a_long_word_without_digits_is_quick() -> None:
    started = time.perf_counter()
    assert form_of("x" * 64_000 + " batch 42 ok") == form_of("x" * 64_000 + " batch 7 ok")
    assert time.perf_counter() - started < 2.0
