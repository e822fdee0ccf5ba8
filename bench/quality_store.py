"""LoCoMo as the store holds it, and `Store.search` in-process, for bench/quality_engine.py.

The mirror is exact where it matters: Okapi BM25 over Postgres's own `english` lexemes (one
embedded Postgres computes them once) with the store's doc_len and avg_len, cosine over the
same MiniLM vectors (exact, where the store's HNSW at ef_search=200 is ~0.97 of exact), and
reciprocal-rank fusion over each leg's top k, ±neighbours at half score. Lexemes and vectors
are cached under /tmp (LONGTHREAD_QUALITY_CACHE), so only the first run pays for them.
Measured against bench/quality.py's run through the client, longthread's v1 assembly scores
0.618/0.765/0.874 here against 0.621/0.768/0.874 there (B=1000/2000/4000).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import statistics
import sys
import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from memory.lexical import bm25_scores, stem_terms
from memory.models import Message, ScoredMessage
from memory.retrieval import content_query
from memory.text import indexed_text as dated
from memory.tokens import default_counter

BUDGETS = (1000, 2000, 4000)
CATEGORIES = (1, 2, 3, 4)
RRF_K = 60  # memory/store/store.py
BM25_K1, BM25_B = 1.2, 0.75  # memory/store/store.py
RECENT_TOKENS = 4000  # the verbatim window after compaction: policy target 0.5 x 8,000
CACHE = Path(os.environ.get("LONGTHREAD_QUALITY_CACHE", "/tmp/longthread-quality"))

Lexemes = dict[str, int]


@dataclass
class Question:
    text: str
    category: int
    evidence: tuple[str, ...]
    lex: Lexemes
    vector: np.ndarray
    search_lex: Lexemes = field(default_factory=dict)  # of content_query(text, participants)
    search_vector: np.ndarray | None = None
    legs: dict[bool, tuple[list[int], list[int]]] = field(default_factory=dict)  # cached


@dataclass
class Conversation:
    """One LoCoMo conversation as the store would hold it, plus its questions."""

    sample_id: str
    messages: list[Message]
    lex: list[Lexemes]
    vectors: np.ndarray
    questions: list[Question]
    seq: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.seq = {m.id: i for i, m in enumerate(self.messages)}
        self.postings: dict[str, list[int]] = defaultdict(list)
        for i, lex in enumerate(self.lex):
            for lexeme in lex:
                self.postings[lexeme].append(i)


def _key(kind: str, texts: Sequence[str]) -> str:
    return hashlib.sha256((kind + "\x00" + "\x00".join(texts)).encode()).hexdigest()[:16]


def _pg_lexemes(texts: Sequence[str]) -> list[Lexemes]:
    """Postgres's `to_tsvector('english', ...)`: what the store indexes for ASCII text without
    dotted identifiers, all of LoCoMo (migration 16's `longthread_search_text` rewrites other
    text first and leaves that unchanged; tests/store/test_search_scripts.py checks every
    LoCoMo text)."""
    import tempfile

    import psycopg

    from worker.stack import EmbeddedPostgres

    with tempfile.TemporaryDirectory(prefix="lt-lex-") as tmp:
        pg = EmbeddedPostgres(Path(tmp) / "pg")
        url = pg.start()
        try:
            with psycopg.connect(url) as conn:
                rows = conn.execute(
                    "SELECT coalesce(json_object_agg(u.lexeme, coalesce(cardinality(u.positions),"
                    " 1)) FILTER (WHERE u.lexeme IS NOT NULL), '{}') FROM unnest(%s::text[])"
                    " WITH ORDINALITY AS x(t, n) LEFT JOIN LATERAL unnest(to_tsvector('english',"
                    " left(x.t, 100000))) u ON true GROUP BY x.n ORDER BY x.n",
                    (list(texts),)).fetchall()
        finally:
            pg.stop()
    return [dict(row[0]) for row in rows]


def lexemes(texts: Sequence[str]) -> list[Lexemes]:
    path = CACHE / f"lex-{_key('pg-english', texts)}.json"
    if path.exists():
        cached: list[Lexemes] = json.loads(path.read_text())
        return cached
    try:
        out = _pg_lexemes(texts)
    except Exception as error:  # no embedded Postgres: a close stand-in, said out loud
        print(f"quality_engine: Postgres lexemes unavailable ({error}); stemming in Python "
              "for this run (not cached)", file=sys.stderr)
        # Not cached: under Postgres's key, every later run would reuse the stand-in
        # silently (the benchmark audit, session 27).
        return [{t: c for t, c in _count(stem_terms(text)).items()} for text in texts]
    CACHE.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out))
    return out


def _count(items: Sequence[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for item in items:
        counts[item] = counts.get(item, 0) + 1
    return counts


def embeddings(texts: Sequence[str]) -> np.ndarray:
    path = CACHE / f"vec-{_key('all-MiniLM-L6-v2', texts)}.npy"
    if path.exists():
        cached: np.ndarray = np.load(path)
        return cached
    from activities.providers.embedders import LocalEmbedder

    vectors = np.asarray(LocalEmbedder().embed_sync(list(texts)), dtype=np.float32)
    CACHE.mkdir(parents=True, exist_ok=True)
    np.save(path, vectors)
    return vectors


def load_samples() -> list[Any]:
    """`longthread.locomo.load_samples`, imported by path: the `longthread` package's
    __init__ pulls in the client, Temporal and the workflows, which a pure harness needs not."""
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "longthread" / "locomo.py"
    spec = importlib.util.spec_from_file_location("_lt_locomo", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(module)
    samples: list[Any] = module.load_samples()
    return samples


def _evidence(q: dict[str, Any]) -> tuple[str, ...]:
    out: list[str] = []
    for item in q.get("evidence", []):
        out.extend(p.strip() for p in str(item).replace(",", ";").split(";") if p.strip())
    return tuple(out)


def indexed_text(message: Message, date: bool = False, speaker: bool = False) -> str:
    """The text the store indexes: the content today; with the session date and/or the
    speaker's name in it, the store-side variants under test."""
    text = message.content
    if speaker and message.name:
        text = f"{message.name}: {text}"
    return dated(text, message.created_at) if date else text


def _uuid_for(sample_id: str, ident: str) -> str:
    """A fixed UUID for a LoCoMo turn id: ids as clients send them, same text and order."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"locomo/{sample_id}/{ident}"))


def load(date: bool = False, speaker: bool = False, uuid_ids: bool = False
         ) -> list[Conversation]:
    """The conversations as the store holds them; with `uuid_ids`, every turn id (and its
    evidence references) replaced by a UUID, as a client would send them."""
    samples = load_samples()
    convs = [[Message.model_validate(m) for m in s.messages] for s in samples]
    if uuid_ids:
        for sample, msgs in zip(samples, convs, strict=True):
            msgs[:] = [m.model_copy(update={"id": _uuid_for(sample.sample_id, m.id)})
                       for m in msgs]
    texts = [indexed_text(m, date, speaker) for msgs in convs for m in msgs]
    asked = [(s, q) for s in samples for q in s.questions if q["category"] in CATEGORIES]
    q_texts = [q["question"] for _, q in asked]
    lex = lexemes([*texts, *q_texts])
    vec = embeddings([*texts, *q_texts])
    names = {id(s): {m.name for m in msgs if m.name}
             for s, msgs in zip(samples, convs, strict=True)}
    searched = [content_query(q["question"], names[id(s)]) for s, q in asked]
    s_lex, s_vec = lexemes(searched), embeddings(searched)
    out, at = [], 0
    q_at = len(texts)
    for sample, msgs in zip(samples, convs, strict=True):
        ids = {m.id for m in msgs}
        questions = []
        for s, q in asked:
            if s is sample:
                evidence = _evidence(q) if not uuid_ids else tuple(
                    _uuid_for(sample.sample_id, e) for e in _evidence(q))
                wanted = tuple(e for e in evidence if e in ids)
                if wanted:
                    at_q = q_at - len(texts)
                    questions.append(Question(q["question"], q["category"], wanted,
                                              lex[q_at], vec[q_at], s_lex[at_q], s_vec[at_q]))
                q_at += 1
        out.append(Conversation(sample.sample_id, msgs, lex[at: at + len(msgs)],
                                vec[at: at + len(msgs)], questions))
        at += len(msgs)
    return out


# -- the store's retrieval, in-process -------------------------------------------------------
def bm25_ranking(conv: Conversation, query: Lexemes) -> list[int]:
    """Okapi BM25 exactly as the store's SQL computes it (doc_len = distinct lexemes, avg over
    the matched postings), best first, ties by id as text."""
    rows = [(lexeme, i) for lexeme in query for i in conv.postings.get(lexeme, ())]
    if not rows:
        return []
    n = len(conv.messages)
    avg = statistics.fmean(len(conv.lex[i]) for _, i in rows)
    scores: dict[int, float] = defaultdict(float)
    for lexeme, i in rows:
        df = len(conv.postings[lexeme])
        tf, dl = conv.lex[i][lexeme], len(conv.lex[i])
        scores[i] += (math.log(1 + (n - df + 0.5) / (df + 0.5)) * tf * (BM25_K1 + 1)
                      / (tf + BM25_K1 * (1 - BM25_B + BM25_B * dl / avg)))
    return sorted(scores, key=lambda i: (-scores[i], conv.messages[i].id))


def dense_ranking(conv: Conversation, vector: np.ndarray) -> list[int]:
    sims = conv.vectors @ vector
    return sorted(range(len(sims)), key=lambda i: (-float(sims[i]), i))


def rrf(rankings: Sequence[Sequence[int]], k: int | None = None,
        rrf_k: int = RRF_K) -> list[tuple[int, float]]:
    """Reciprocal-rank fusion of each ranking's top `k` (all of it with None)."""
    scores: dict[int, float] = defaultdict(float)
    for ranking in rankings:
        for rank, i in enumerate(ranking[:k] if k else ranking, start=1):
            scores[i] += 1.0 / (rrf_k + rank)
    return sorted(scores.items(), key=lambda item: (-item[1], item[0]))


def legs(conv: Conversation, query: Question,
         content: bool = False) -> tuple[list[int], list[int]]:
    """(BM25, dense) rankings of the question as asked, or (`content`) of the text the caller
    would search with: `memory.retrieval.content_query`, the participants' names taken out."""
    if content not in query.legs:
        lex, vector = (query.search_lex, query.search_vector) if content \
            and query.search_vector is not None else (query.lex, query.vector)
        query.legs[content] = (bm25_ranking(conv, lex), dense_ranking(conv, vector))
    return query.legs[content]


def store_search(conv: Conversation, query: Question, k: int, neighbours: int = 0,
                 rrf_k: int = RRF_K, content: bool = False,
                 neighbour_weight: float = 0.5, neighbour_hits: int | None = None
                 ) -> list[ScoredMessage]:
    """`Store.search(text, embedding, k, neighbours=...)`, in-process. The store scores each
    neighbour at half its nearest hit's score (`neighbour_weight`; 0 makes the neighbours
    context rows that carry no score of their own, a diagnostic of what that score does).
    With `neighbour_hits`, only the best that many hits bring their neighbours."""
    fused = rrf(legs(conv, query, content), k, rrf_k)[:k]
    hits = list(fused)
    if neighbours and hits:
        shown = {i for i, _ in hits}
        by_seq = dict(hits)
        extra = sorted({i + d for i, _ in hits[:neighbour_hits]
                        for d in range(-neighbours, neighbours + 1)
                        if d and 0 <= i + d < len(conv.messages)} - shown)
        hits += [(i, by_seq[min(by_seq, key=lambda s: abs(s - i))] * neighbour_weight)
                 for i in extra]
    return [ScoredMessage(message=conv.messages[i], score=score, session=conv.sample_id, seq=i)
            for i, score in hits]


# -- baselines: whole turns, whole budget ----------------------------------------------------
def fit(conv: Conversation, order: Sequence[int], budget: int) -> set[str]:
    """Whole turns in `order` while they fit (a turn too big is skipped), as bench/quality.py."""
    counter = default_counter()
    used, chosen = 0, set()
    for i in order:
        m = conv.messages[i]
        cost = counter.count_message(m.role, m.content)
        if used + cost <= budget:
            used += cost
            chosen.add(m.id)
    return chosen


def baselines(conv: Conversation, q: Question, budget: int) -> dict[str, set[str]]:
    texts = [m.content for m in conv.messages]
    bm25 = bm25_scores(q.text, texts)
    hybrid = rrf(legs(conv, q))
    return {
        "FIFO": fit(conv, range(len(texts) - 1, -1, -1), budget),
        "BM25": fit(conv, sorted(range(len(texts)), key=lambda i: (-bm25[i], i)), budget),
        "hybrid RRF": fit(conv, [i for i, _ in hybrid], budget),
    }


def recent_window(conv: Conversation, tokens: int = RECENT_TOKENS) -> list[Message]:
    """The verbatim window a settled session holds: the newest turns within `tokens`."""
    counter = default_counter()
    used, start = 0, len(conv.messages)
    while start > 0:
        m = conv.messages[start - 1]
        used += counter.count_message(m.role, m.content)
        if used > tokens:
            break
        start -= 1
    return conv.messages[start:]


def score(conv: Conversation, q: Question, shown: set[str], body: str) -> float:
    """Evidence recall of one window: its evidence turns present by source id or verbatim."""
    return sum(e in shown or conv.messages[conv.seq[e]].content in body
               for e in q.evidence) / len(q.evidence)
