"""The hybrid search's SQL, in two statements: BM25 ranks (ids only), then the vector leg fused
with them by reciprocal rank, and the fused hits fetched with their neighbours.

Two statements instead of one so that the lexical leg, which needs no query vector, can run
while the query is being embedded (`activities.serving`), and each statement is planned on
its own: the one statement cost about 7 ms of planning at 100k, more than the lexical leg's
execution. The fused result is what the single statement returned: the same CTEs, with the
lexical ranks passed in as arrays (tests/store/test_search_split.py compares the two).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from memory.store.rows import message_columns

__all__ = ["BM25_B", "BM25_K1", "FUSED", "FUSED_AROUND", "LEXEME_POSTINGS_CAP", "LEXICAL",
           "LEXICAL_CTES", "QUERY_LEXEMES", "RRF_K", "VECTOR_AND_FUSED", "lexical_params",
           "neighbour_scores"]

RRF_K = 60  # reciprocal-rank-fusion constant from Cormack et al.; the usual default
BM25_K1 = 1.2  # the usual Okapi BM25 parameters (Robertson & Zaragoza)
BM25_B = 0.75
LEXEME_POSTINGS_CAP = 2000  # see the search query: lexemes this common are not ranked by

# A query's lexemes (the session's search and the tenant's). Its text is rewritten as every
# message's is for its `tsv` (migration 16: NFC, CJK bigrams, ids split from other scripts,
# dotted identifiers' parts). A bare number of an id's kind (three digits or more, or with a
# decimal point) also stands with a minus sign: Postgres's parser reads the hyphen in
# RF-77310 or ORD-58213-KX as one (the lexeme is '-77310'), so a customer's "order 58213"
# found no such id (user test, session 31). Not a shorter one: the '-11' of a date written
# 2026-11-02 would answer "room 11". Not the other way either: the '-2026' of INV-2026-0042
# read as '2026' matched the year indexed with every dated message (migration 9), and a search
# for the invoice listed every message of the year (upgrade test and review, session 31).
# Done on the query, so every message indexed before matches as it is.
QUERY_LEXEMES = """
    SELECT DISTINCT v.lexeme
    FROM unnest(tsvector_to_array(to_tsvector('english', longthread_search_text(%(text)s))))
        AS l(lexeme),
    LATERAL (VALUES (l.lexeme), (CASE WHEN l.lexeme ~ '^([0-9]{3}|[0-9]+[.][0-9])'
                                      THEN '-' || l.lexeme END))
        AS v(lexeme)
    WHERE v.lexeme IS NOT NULL"""

# The query's lexemes, their postings in the session (index and unindexed tail) and the
# statistics BM25 needs; `lex` follows (two forms below, the same ranks).
_POSTINGS_CTES = f"""
query AS ({QUERY_LEXEMES}
), tail AS (
    -- The messages past the session's lexical cursor, which the inverted index does not hold
    -- yet (memory.store.indexing): their postings for the query's lexemes, read from their
    -- text vectors exactly as the index will hold them. A few rows, unless a burst of appends
    -- is still being indexed.
    SELECT u.lexeme, m.id, coalesce(cardinality(u.positions), 1) AS tf,
           length(d.doc) AS doc_len
    FROM messages m, LATERAL (SELECT longthread_indexed(m.tsv, m.created_at) AS doc) d,
         unnest(d.doc) AS u
    WHERE m.tenant = %(tenant)s AND m.session = %(session)s
      AND m.seq >= (SELECT coalesce(max(indexed_seq), 0) FROM lexical_cursors
                    WHERE tenant = %(tenant)s AND session = %(session)s)
      -- No message lies past next_seq; saying so makes this a range, which the planner
      -- estimates as narrow and reads through the seq index (one bound alone looked like a
      -- third of the session and was read by a scan of all of it).
      AND m.seq < (SELECT next_seq FROM sessions
                   WHERE tenant = %(tenant)s AND session = %(session)s)
      AND u.lexeme IN (SELECT lexeme FROM query)
), postings AS (
    -- Each query lexeme's postings in this session, read through the inverted index's primary
    -- key (usable under row-level security), and the tail's. A lexeme with `cap` postings or
    -- more is too common to rank by, like a stop word (BM25 gives it little weight anyway):
    -- its document frequency is counted (up to `cap` from the index, plus the tail's) before
    -- any posting is read, so a big session's common words cost a bounded count and no sort;
    -- the sum reaches `cap` exactly when the whole count would.
    SELECT l.lexeme, p.id, p.tf, p.doc_len, d.df
    FROM query AS l,
    LATERAL (SELECT count(*) + (SELECT count(*) FROM tail WHERE tail.lexeme = l.lexeme) AS df
             FROM (SELECT 1 FROM message_terms
                   WHERE tenant = %(tenant)s AND session = %(session)s AND lexeme = l.lexeme
                   LIMIT %(cap)s) c) AS d,
    LATERAL (SELECT id, tf, doc_len FROM message_terms
             WHERE tenant = %(tenant)s AND session = %(session)s AND lexeme = l.lexeme
               AND d.df < %(cap)s
             UNION ALL
             SELECT id, tf, doc_len FROM tail
             WHERE tail.lexeme = l.lexeme AND d.df < %(cap)s) AS p
), kept AS (
    SELECT * FROM postings
), corpus AS (
    SELECT greatest((SELECT coalesce(max(seq), 0) + 1 FROM messages
                     WHERE tenant = %(tenant)s AND session = %(session)s),
                    (SELECT max(df) FROM kept)) AS n,
           coalesce((SELECT avg(doc_len) FROM kept), 1)::float8 AS avg_len
), idf AS MATERIALIZED (
    -- Each kept lexeme's inverse document frequency, computed once per lexeme, not per posting
    -- (numeric ln costs ~10 µs: per posting it was most of a big session's search).
    SELECT k.lexeme, ln(1 + (c.n - k.df + 0.5) / (k.df + 0.5))::float8 AS w
    FROM (SELECT DISTINCT lexeme, df FROM kept) k, corpus c
"""

# A kept message's Okapi BM25 score (grouped by t.id), and the filter to the time bounds.
_BM25_SCORE = """sum(i.w * t.tf * (%(k1)s + 1)
        / (t.tf + %(k1)s * (1 - %(b)s + %(b)s * t.doc_len / c.avg_len)))"""
_SCORED_IN_BOUNDS = """FROM kept t JOIN idf i ON i.lexeme = t.lexeme, corpus c
    WHERE (%(since)s::timestamptz IS NULL AND %(until)s::timestamptz IS NULL)
       OR EXISTS (SELECT 1 FROM messages m
                  WHERE m.tenant = %(tenant)s AND m.session = %(session)s AND m.id = t.id
                    AND (%(since)s::timestamptz IS NULL OR m.created_at >= %(since)s)
                    AND (%(until)s::timestamptz IS NULL OR m.created_at < %(until)s))"""

# Okapi BM25 over the kept postings, every matching message ranked, then the first k.
_LEX_ALL = f"""), lex AS (
    -- Okapi BM25 over the kept postings.
    SELECT t.id, row_number() OVER (ORDER BY {_BM25_SCORE} DESC, t.id) AS rank
    {_SCORED_IN_BOUNDS}
    GROUP BY t.id ORDER BY rank LIMIT %(k)s
)
"""

# BM25 over the inverted index; shared by the hybrid search's single statement (before it was
# split in two) and the tests and benchmarks that compare with it.
LEXICAL_CTES = _POSTINGS_CTES + _LEX_ALL

# The same ranks (tests/store/test_search_split.py; 999 LoCoMo questions at k = 40, 200 and
# 500 on a 100k session gave the same lists): the k best messages by score, ties by id, are
# picked by a top-k sort before they are numbered, instead of numbering every matching
# message (~1,800 for a question at 100k) and keeping the first k. 0.93x the BM25 leg's time.
_LEX_TOP_K = f"""), lex AS (
    -- Okapi BM25 over the kept postings: the k best by score (ties by id), then ranked.
    SELECT id, row_number() OVER (ORDER BY score DESC, id) AS rank
    FROM (SELECT t.id, {_BM25_SCORE} AS score
          {_SCORED_IN_BOUNDS}
          GROUP BY t.id ORDER BY score DESC, t.id LIMIT %(k)s) best
)
"""

LEXICAL = "WITH " + _POSTINGS_CTES + _LEX_TOP_K + "SELECT id, rank FROM lex ORDER BY rank"

# The vector leg and the fusion, after a `lex` CTE of (id, rank): the single statement's
# tail, shared by both forms.
VECTOR_AND_FUSED = """vec AS (
    SELECT id, row_number() OVER (ORDER BY embedding <=> %(q)s) AS rank
    FROM (SELECT id, embedding FROM messages
          WHERE tenant = %(tenant)s AND session = %(session)s AND embedding IS NOT NULL
            AND (%(since)s::timestamptz IS NULL OR created_at >= %(since)s)
            AND (%(until)s::timestamptz IS NULL OR created_at < %(until)s)
          ORDER BY embedding <=> %(q)s LIMIT %(k)s) hits
), fused AS (
    SELECT id, sum(1.0 / (%(rrf)s + rank)) AS score
    FROM (SELECT * FROM vec UNION ALL SELECT * FROM lex) ranked GROUP BY id
    -- the k best (and any tied with the k-th): only those are fetched from messages
    ORDER BY score DESC FETCH FIRST %(k)s ROWS WITH TIES
)
SELECT """ + message_columns("m") + """, fused.score FROM fused
JOIN messages m ON m.tenant = %(tenant)s AND m.session = %(session)s AND m.id = fused.id
ORDER BY fused.score DESC, m.seq LIMIT %(k)s
"""

# The lexical ranks come in as two arrays (`LEXICAL`'s rows, in order).
FUSED = """WITH lex AS (
    SELECT * FROM unnest(%(lex_ids)s::text[], %(lex_ranks)s::bigint[]) AS l(id, rank)
), """ + VECTOR_AND_FUSED

# The neighbours of the best `near_hits` hits (all of them when NULL: the turns `around` seqs
# either side) ride in the same statement, marked `extra`; the caller scores each at half its
# nearest hit's score.
FUSED_AROUND = "WITH hits AS (" + FUSED + """), near AS (
    SELECT DISTINCT h.seq + d AS seq
    FROM (SELECT seq FROM hits ORDER BY score DESC, seq LIMIT %(near_hits)s) h,
         generate_series(-%(around)s::int, %(around)s::int) AS d WHERE d <> 0
)
SELECT * FROM (
    SELECT *, false AS extra FROM hits
    UNION ALL
    SELECT """ + message_columns("m") + """, NULL, true FROM near
    JOIN messages m ON m.tenant = %(tenant)s AND m.session = %(session)s AND m.seq = near.seq
    WHERE m.id NOT IN (SELECT id FROM hits)
) found ORDER BY extra, score DESC, seq
"""


def lexical_params(tenant: str, session: str, text: str, k: int, since: datetime | None,
                   until: datetime | None) -> dict[str, Any]:
    return {"tenant": tenant, "session": session, "text": text, "k": k, "k1": BM25_K1,
            "b": BM25_B, "cap": LEXEME_POSTINGS_CAP, "since": since, "until": until}


def neighbour_scores(hits: Sequence[tuple[int, float]], extras: Sequence[int],
                     around: int) -> list[float]:
    """Each neighbour's score: half that of the hit nearest to it by seq; of two equally near,
    the one listed first (`hits` is best first). Looked up at seq ± d for d = 1..`around`
    (every neighbour is that close to a hit) instead of a scan of all hits per neighbour,
    which took most of a 200-hit search's client time."""
    by_seq: dict[int, tuple[int, float]] = {}
    for position, (seq, score) in enumerate(hits):
        by_seq.setdefault(seq, (position, score))
    out = []
    for seq in extras:
        near = None
        for d in range(max(around, 0) + 1):
            found = [by_seq[s] for s in {seq - d, seq + d} if s in by_seq]
            if found:
                near = min(found)
                break
        if near is None:  # not within `around` of any hit: the nearest, as a scan finds it
            near = min(by_seq.values(), key=lambda ps: (abs(hits[ps[0]][0] - seq), ps[0]))
        out.append(near[1] * 0.5)
    return out
