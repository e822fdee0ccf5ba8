"""The inverted index (`message_terms`) is written after an append returns, not inside it.

An append used to write each message's postings in its own transaction, through a trigger:
about 15 rows a message into a large primary key, 22 of the 30 ms of database time that 100
LoCoMo turns cost at 20k messages. Now `lexical_cursors` holds, per session, the seq below
which every message is indexed; `Store.index_terms` (called by the embedding activity, which
the workflow starts after every append) indexes what lies past it, and the BM25 leg reads the
messages past it straight from their text vectors (`memory.store.search`), so a search ranks
exactly as if everything were indexed (tests/store/test_indexing.py checks both agree).
"""

from __future__ import annotations

__all__ = ["INDEX_TERMS", "INDEX_TERMS_BYTES", "INDEX_TERMS_LIMIT"]

INDEX_TERMS_LIMIT = 2000  # messages per statement: a bounded transaction after a burst
# And the stored size of the messages' text vectors per statement (the message that crosses it
# is the last; at least one): the cost is the postings written, about 15-50 bytes of vector
# each, not the messages. 2,000 messages of 10 KB logs made about 1.8 million postings in one
# statement, 20.7 s, past the embedding activity's 15 s heartbeat, so it was cancelled and
# retried on the same statement, 36 times in 12 minutes, embedding nothing (session 26). The
# size is read without detoasting the vectors (pg_column_size); LoCoMo turns (about 150 bytes)
# fit 2,000 either way.
INDEX_TERMS_BYTES = 1_000_000

# One statement, so one snapshot: the postings and the cursor move together. Appends hold the
# session's row until they commit and take seqs in order, so the committed messages past the
# cursor are a contiguous run and `max(seq) + 1` leaves nothing unindexed behind it. Two runs
# at once (a retried activity beside its zombie) write the same rows: ON CONFLICT DO NOTHING,
# and the cursor only moves forward.
INDEX_TERMS = """
WITH next AS (
    SELECT m.id, m.seq, pg_column_size(m.tsv) AS size
    FROM messages m
    WHERE m.tenant = %(tenant)s AND m.session = %(session)s
      -- The coalesce inside the sub-select: around it, row-level security treats the bound
      -- as possibly leaky and reads the session from seq 0, filtering (a reviewer's plan at
      -- 100k: 100,000 rows removed by the filter on every call).
      AND m.seq >= (SELECT coalesce(max(indexed_seq), 0) FROM lexical_cursors
                    WHERE tenant = %(tenant)s AND session = %(session)s)
      -- A range, as in the search's tail: one bound alone looks like a third of the table
      -- to the planner, which then may read the session through another index and sort.
      -- KEY SHARE: an erasure (FOR UPDATE) waits for this statement, and this one for an
      -- erasure, which leaves next_seq at 0, so no posting of an erased session outlives it.
      -- Appends (NO KEY UPDATE) do not wait for it.
      AND m.seq < (SELECT next_seq FROM sessions
                   WHERE tenant = %(tenant)s AND session = %(session)s FOR KEY SHARE)
    ORDER BY m.seq LIMIT %(limit)s
), todo AS (  -- the first of them, in order, that start within the size bound
    SELECT m.id, m.seq, longthread_indexed(m.tsv, m.created_at) AS doc
    FROM (SELECT id, seq, coalesce(sum(size) OVER (ORDER BY seq) - size, 0) AS before
          FROM next) n
    -- by the primary key, a row at a time: only these rows' vectors are read
    JOIN messages m ON m.tenant = %(tenant)s AND m.session = %(session)s AND m.id = n.id
    WHERE n.before < %(bytes)s
), terms AS (
    INSERT INTO message_terms (tenant, session, lexeme, id, tf, doc_len)
    SELECT %(tenant)s, %(session)s, u.lexeme, t.id, coalesce(cardinality(u.positions), 1),
           length(t.doc)
    FROM todo t, unnest(t.doc) AS u
    ORDER BY u.lexeme, t.id
    ON CONFLICT DO NOTHING
), moved AS (
    INSERT INTO lexical_cursors (tenant, session, indexed_seq)
    SELECT %(tenant)s, %(session)s, max(seq) + 1 FROM todo HAVING count(*) > 0
    ON CONFLICT (tenant, session) DO UPDATE
        SET indexed_seq = greatest(lexical_cursors.indexed_seq, excluded.indexed_seq)
)
SELECT count(*)::int AS n,
       -- more may wait: the statement stopped at a bound, not at the end of the session
       count(*) < (SELECT count(*) FROM next) OR count(*) = %(limit)s AS more
FROM todo
"""
