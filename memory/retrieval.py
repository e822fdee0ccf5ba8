"""Reranking fused retrieval candidates, from nothing but what the store returned.

Pure and deterministic: the output depends only on the query and the candidates (message,
fused score, session, seq), which is what a served context records, so a replay reproduces
the ranking without the store, the embedder or any model.

Signals, each measured on LoCoMo with `python -m bench.quality_engine --ablation`:
- Dialogue context. A turn's relevance gains half of its adjacent retrieved turns' (the same
  half weight the store gives a neighbour): a question and its answer, a remark and its
  follow-up, are relevant together, and a turn between two hits is likely the point.
- Speaker attribution. When the query names exactly one participant, what that participant
  said is the likelier evidence: turns by others count half. The name itself is matched
  against who spoke, not the text, where it mostly appears in greetings to that person.
- Near-duplicates. A candidate repeating a better-ranked one from the same speaker (term
  sets nearly equal: a re-sent message, a tool output that differs by a timestamp) is dropped.
- No importance prior: weighting questions, decisions and recency up scored -0.003 at 2,000
  tokens in the ablation, and -0.01 to -0.05 as a weight in the summarizer, so it was removed.
  What must stay verbatim is pinned (`metadata.pinned`); compaction never covers it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache

from memory.lexical import stem_terms
from memory.models import ScoredMessage
from memory.similarity import near_duplicates

__all__ = [
    "CONTEXT_WEIGHT",
    "OTHER_SPEAKER_WEIGHT",
    "RerankPolicy",
    "candidate_count",
    "content_query",
    "has_content",
    "named_speakers",
    "neighbour_hit_count",
    "ranked",
    "rerank",
]

CONTEXT_WEIGHT = 0.5  # an adjacent hit's relevance counts half, as the store's neighbours do
OTHER_SPEAKER_WEIGHT = 0.5  # turns by someone other than the one participant the query names


@dataclass(frozen=True)
class RerankPolicy:
    """Which signals the reranker uses; the defaults are what the ablation supports."""

    context: bool = True
    speaker: bool = True
    dedup: bool = True


DEFAULT_RERANK = RerankPolicy()


def candidate_count(max_tokens: int) -> int:
    """How many fused candidates to ask the store for (its `k`) for a budget: about three
    times what fits (a LoCoMo turn is ~30 tokens), so the reranker has room to reorder, and
    never fewer than the client's old default of 40 nor more than the store allows (500)."""
    return max(40, min(500, max_tokens // 10))


def neighbour_hit_count(k: int) -> int:
    """How many of the best of `k` fused hits bring their neighbours (the store's ±1 turns):
    half of them; with k at `candidate_count` about one and a half times what fits the budget.
    A lower hit's neighbour scores half of a score already too low to be taken, so on LoCoMo
    as served (bench/quality_engine.py) recall moved by at most 0.001 at 1,000, 2,000 and
    4,000 tokens, while a context() at 2,000 fetches and reranks ~390 rows instead of ~580."""
    return max(1, k // 2)


def has_content(query: str | None) -> bool:
    """Whether a query carries anything to search for (not only stop words like "ok thanks")."""
    return bool(query and stem_terms(query))


@lru_cache(maxsize=4096)
def _name_pattern(name: str) -> re.Pattern[str]:
    parts = {name.strip(), name.strip().split()[0]} if name.strip() else set()
    alternatives = "|".join(sorted((re.escape(p) for p in parts if len(p) > 1),
                                   key=lambda p: (-len(p), p)))  # "Mel Smith" before "Mel"
    return re.compile(rf"(?<!\w)(?:{alternatives})(?!\w)", re.IGNORECASE) if alternatives \
        else re.compile(r"(?!x)x")


def named_speakers(query: str, speakers: Sequence[str]) -> set[str]:
    """The participants (by `Message.name`) the query mentions by full or first name."""
    return {s for s in speakers if _name_pattern(s).search(query)}


def content_query(query: str, participants: Iterable[str]) -> str:
    """The text to search the archive with: the query without the participants' names.

    A name in a question ("What did Caroline paint?") says who spoke, which `rerank` weighs
    from each candidate's speaker; left in the search text, it makes both retrieval legs favour
    turns that mention the name, mostly greetings to that person by someone else. Measured on
    LoCoMo (bench/quality_engine.py, "names out of the search text"). A query that is nothing
    but names is searched as it is."""
    stripped = query
    for name in sorted(set(participants), key=len, reverse=True):
        stripped = _name_pattern(name).sub(" ", stripped)
    stripped = re.sub(r"\s+", " ", re.sub(r"(?<!\w)['’]s\b", " ", stripped)).strip()
    return stripped if has_content(stripped) else query


def _speaker(candidate: ScoredMessage) -> str:
    return candidate.message.name or candidate.message.role


def rerank(query: str | None, candidates: Sequence[ScoredMessage],
           policy: RerankPolicy = DEFAULT_RERANK) -> list[ScoredMessage]:
    """Candidates best first with their reranked scores; a repeated id keeps its best score,
    near-duplicates are dropped. Ties fall to position, then id, so the order is total."""
    return [c if c.score == s else ScoredMessage.model_construct(
        message=c.message, score=s, session=c.session, seq=c.seq)
        for c, s in ranked(query, candidates, policy)]


def ranked(query: str | None, candidates: Sequence[ScoredMessage],
           policy: RerankPolicy = DEFAULT_RERANK) -> list[tuple[ScoredMessage, float]]:
    """`rerank` as (candidate as given, reranked score) pairs: what assembly needs, without
    building a new object per candidate."""
    best: dict[str, ScoredMessage] = {}
    for c in candidates:
        if c.message.id not in best or c.score > best[c.message.id].score:
            best[c.message.id] = c
    pool = sorted(best.values(), key=lambda c: (-c.score, c.seq or 0, c.message.id))
    scores = [max(c.score, 0.0) for c in pool]

    if policy.context:
        at = {(c.session, c.seq): s for c, s in zip(pool, scores, strict=True)
              if c.seq is not None}
        scores = [s + CONTEXT_WEIGHT * (at.get((c.session, c.seq - 1), 0.0)
                                        + at.get((c.session, c.seq + 1), 0.0))
                  if c.seq is not None else s for c, s in zip(pool, scores, strict=True)]

    if policy.speaker and query:
        names = sorted({c.message.name for c in pool if c.message.name})
        named = named_speakers(query, names) if len(names) > 1 else set()
        if len(named) == 1:
            scores = [s if c.message.name in named else s * OTHER_SPEAKER_WEIGHT
                      for c, s in zip(pool, scores, strict=True)]

    order = sorted(zip(pool, scores, strict=True),
                   key=lambda cs: (-cs[1], cs[0].seq or 0, cs[0].message.id))
    if policy.dedup:
        repeats = near_duplicates([c.message.content for c, _ in order],
                                  groups=[_speaker(c) for c, _ in order])
        order = [cs for i, cs in enumerate(order) if i not in repeats]
    return order
