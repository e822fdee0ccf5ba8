"""Semantic deduplication of retrieved candidates, over their text.

`near_duplicates` works on text alone, so the reranker can use it on recorded candidates with
no embedder at hand, and a replay reproduces it. Deterministic: one pass in input order.
(Embedding-based dedup and leader clustering lived here too; nothing in the product called
them, and on LoCoMo near-duplicate removal of any kind changed recall by nothing, so they went:
bench/quality_engine.py's ablation keeps the text form, which matters for re-sent messages.)
"""

from __future__ import annotations

import math
import string
from collections import Counter
from collections.abc import Hashable, Sequence
from functools import lru_cache
from itertools import chain

from memory.lexical import stem, stem_terms
from memory.text import _WORD, STOPWORDS, scripts_on

__all__ = ["near_duplicates"]

MIN_TERMS = 3  # a shorter text ("Thanks!", "Yes, it was") means what its context says


class _Stems(dict[str, str]):
    """word -> `stem(word)`, filled on a miss (a plain dict lookup on a hit, no call)."""

    def __missing__(self, word: str) -> str:
        if len(self) >= _STEMS_HELD:
            self.clear()
        stemmed = self[word] = stem(word)
        return stemmed


_STEMS_HELD = 65536
_STEMS = _Stems()
# What `memory.text.terms` drops: stop words and one-character words (all the pattern's
# one-character matches are a letter or a digit).
_DROPPED = STOPWORDS | frozenset(string.ascii_lowercase + string.digits)


def _term_set(text: str) -> frozenset[str]:
    return _term_set_of(text, scripts_on())


@lru_cache(maxsize=16384)
def _term_set_of(text: str, scripts: bool) -> frozenset[str]:
    """`frozenset(stem_terms(text))`, built from the distinct words with set operations
    (what `memory.text.terms` keeps, each word stemmed once): a context's ~600 candidates
    are mostly new texts, and this was most of the near-duplicate pass on them. Cached: a
    session's candidates come back on many calls. Text in other scripts is read by `terms`."""
    if scripts and not text.isascii():
        return frozenset(stem_terms(text))
    words = set(_WORD.findall(text.lower()))
    words -= _DROPPED
    return frozenset(map(_STEMS.__getitem__, words))


def near_duplicates(texts: Sequence[str], threshold: float = 0.9,
                    groups: Sequence[str] | None = None) -> dict[int, int]:
    """Map each near-duplicate's index to the earlier index it repeats: the Jaccard similarity
    of their stemmed term sets is at least `threshold`, and (with `groups`, e.g. speakers) they
    are in the same group. Texts with fewer than MIN_TERMS terms are never duplicates. Each
    repeats the first earlier text, itself no duplicate, that it is that similar to.

    Near-linear by prefix filtering (Chaudhuri et al. 2006): with terms ordered rarest first,
    two sets that reach the threshold share a term among the first |A| - ceil(t|A|) + 1 of
    each, so only texts sharing such a term are ever compared. The index is kept per group
    (texts of another group are never duplicates, and a cluster of copies said by different
    speakers made one long posting list), and the prefix is taken by each term's rank in
    that order (one dict lookup, not a tuple per term). On a context's ~520 candidates at
    100k (mostly copies of one another) this took 0.41x the time of the pass before when
    their texts had been seen, 0.83x on new texts (tokenizing is most of what is left); the
    result is the same, which tests/unit/test_retrieval.py checks against a pairwise scan.
    The rank order is built by two sorts in C and each group has its own term -> texts dict
    (no (group, term) tuple per prefix term): 0.85x the time of that pass on 20 contexts'
    candidates at 100k with their term sets cached, the same duplicates on 300 contexts."""
    sets = [_term_set(t) for t in texts]
    df = Counter(chain.from_iterable(sets))
    # Rarest first, ties by term: sorted by term, then stably by document frequency (two
    # sorts in C, instead of a Python key function building a tuple per term).
    order = sorted(df)
    order.sort(key=df.__getitem__)
    by_rank = {term: r for r, term in enumerate(order)}.__getitem__
    indexes: dict[Hashable, dict[str, list[int]]] = {}  # group -> term -> texts, ascending
    lengths: dict[int, int] = {}  # set size -> prefix length
    duplicates: dict[int, int] = {}
    # (group, term set) -> the index a text with exactly that set repeats: the first such
    # text if it was no duplicate, else what that one repeats. Every earlier candidate was
    # already compared against that same set and the first match is the same, so copies (most
    # of a long chat's candidates) skip the prefix and the comparisons. Only while identical
    # sets count as duplicates (threshold at most 1).
    repeats: dict[tuple[Hashable, frozenset[str]], int] | None = {} if threshold <= 1 else None
    for i, terms in enumerate(sets):
        size = len(terms)
        if size < MIN_TERMS:
            continue
        group = None if groups is None else groups[i]
        if repeats is not None:
            same = repeats.get((group, terms))
            if same is not None:
                duplicates[i] = same
                continue
            repeats[(group, terms)] = i  # corrected below if i repeats an earlier text
        index = indexes.get(group)
        if index is None:
            index = indexes[group] = {}
        length = lengths.get(size)
        if length is None:
            length = lengths[size] = size - math.ceil(threshold * size - 1e-9) + 1
        # Most texts (fewer than 10 terms at 0.9) have a one-term prefix: its rarest term,
        # found by `min` without sorting the set (ranks are distinct, so it is the same term).
        # One term's postings are already in ascending order; several are merged.
        if length == 1:
            prefix = [min(terms, key=by_rank)]
            found: Sequence[int] = index.get(prefix[0], ())
        else:
            prefix = sorted(terms, key=by_rank)[:length]
            found = sorted({j for term in prefix for j in index.get(term, ())})
        for j in found:
            other = sets[j]
            shared = len(terms & other)
            if shared / (size + len(other) - shared) >= threshold:
                duplicates[i] = j
                if repeats is not None:
                    repeats[(group, terms)] = j
                break
        else:
            for term in prefix:
                posting = index.get(term)
                if posting is None:
                    index[term] = [i]
                else:
                    posting.append(i)
    return duplicates
