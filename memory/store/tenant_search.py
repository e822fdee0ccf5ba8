"""Search across a tenant's sessions: "which tickets mention order A-58213?".

Every other search is one session's (the hybrid retrieval a context is built from). A support
team also asks across tickets, mostly for exact things (an order number, an email, a refund
reference), so this is lexical: Okapi BM25 over the inverted index, `message_terms`, whose
primary key (tenant, session, lexeme, id) Postgres 18 reads by skip scan for one tenant and a
lexeme, one descent per session (about 15 ms a lexeme over 2,000 sessions on these cores,
measured before writing this); no new index, so appends and indexing cost what they did.
A message is found once it is indexed, seconds after its append (`memory.store.indexing`).
"""

from __future__ import annotations

from memory.models import ScoredMessage
from memory.store.base import StoreBase
from memory.store.rows import message_columns, row_to_scored
from memory.store.search import BM25_B, BM25_K1, QUERY_LEXEMES

__all__ = ["TENANT_POSTINGS_CAP", "TenantSearch"]

# A lexeme with this many postings in the tenant is too common to rank by (like a stop word):
# it is counted up to here and then left out, so "order" over a million messages costs a
# bounded count, not a million rows.
TENANT_POSTINGS_CAP = 20_000

# BM25+ (Lv and Zhai, "Lower-bounding term frequency normalization", CIKM 2011): each matched
# term adds at least idf × delta, however long its message. Plain BM25's length normalisation
# ranked a pasted 80 KB log holding the one order id asked for below 41 short messages that
# shared only the word "order" (user test, session 31); across tickets one asks for exact
# things, and the message that has them must come first. The session's own search (the
# context's retrieval, measured on LoCoMo) stays plain BM25.
BM25_PLUS_DELTA = 1.0

_SEARCH = f"""
WITH query AS (
    -- rewritten as the messages' text is (migration 16), so 订单 or DeadlockDetected match;
    -- a number also with the other sign (RF-77310 holds '-77310')
    {QUERY_LEXEMES}
), postings AS (
    SELECT p.session, p.id, p.tf, p.doc_len, q.lexeme, d.df
    FROM query q,
    LATERAL (SELECT count(*) AS df FROM (SELECT 1 FROM message_terms
             WHERE tenant = %(tenant)s AND lexeme = q.lexeme LIMIT %(cap)s) c) AS d,
    LATERAL (SELECT session, id, tf, doc_len FROM message_terms
             WHERE tenant = %(tenant)s AND lexeme = q.lexeme AND d.df < %(cap)s) AS p
), corpus AS (
    SELECT greatest((SELECT coalesce(sum(next_seq), 0) FROM sessions
                     WHERE tenant = %(tenant)s), (SELECT coalesce(max(df), 0) FROM postings))
               AS n,
           coalesce((SELECT avg(doc_len) FROM postings), 1)::float8 AS avg_len
), best AS (
    SELECT t.session, t.id,
           sum(ln(1 + (c.n - t.df + 0.5) / (t.df + 0.5)) * (t.tf * ({BM25_K1} + 1)
               / (t.tf + {BM25_K1} * (1 - {BM25_B} + {BM25_B} * t.doc_len / c.avg_len))
               + {BM25_PLUS_DELTA}))::float8 AS score
    FROM postings t, corpus c
    GROUP BY t.session, t.id
    ORDER BY score DESC, t.session, t.id
    LIMIT %(k)s
)
SELECT b.session, b.score, {message_columns("m")}
FROM best b JOIN messages m
  ON m.tenant = %(tenant)s AND m.session = b.session AND m.id = b.id
ORDER BY b.score DESC, b.session, m.seq
"""


class TenantSearch(StoreBase):
    """`search_tenant`; mixed into `Store`, whose `_batch` scopes the query by tenant."""

    async def search_tenant(self, tenant: str, query: str, k: int) -> list[ScoredMessage]:
        """The `k` messages of any of the tenant's sessions that best match `query` (BM25),
        best first; each names its session and seq."""
        (rows,) = await self._batch(tenant, [(_SEARCH, {
            "tenant": tenant, "text": query, "k": k, "cap": TENANT_POSTINGS_CAP})],
            prepare=False)
        return [row_to_scored(row, float(row["score"]), row["session"]) for row in rows]
