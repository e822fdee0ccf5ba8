"""The statements an append runs: the one-statement append and the reference path's INSERT.

Apart from `memory.store.appends`, which builds their arrays and reads what they return, as
the hybrid search's SQL is apart from `Store` (`memory.store.search`): each reads best whole,
and the Python beside them is about the batch, not the statement.
"""

from __future__ import annotations

# One INSERT for a whole batch, from one array per column (in the batch's order: seq follows).
_INSERT_MESSAGES = """
INSERT INTO messages (tenant, session, id, seq, role, content, name, created_at, tool_call_id,
                      tool_calls, metadata, digest, tokens)
SELECT %s, %s, u.id, %s + u.n - 1, u.role, u.content, u.name, u.created_at, u.tool_call_id,
       u.tool_calls::jsonb, u.metadata::jsonb, u.digest, u.tokens
FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[], %s::timestamptz[], %s::text[],
            %s::text[], %s::text[], %s::text[], %s::int[])
     WITH ORDINALITY AS u(id, role, content, name, created_at, tool_call_id, tool_calls,
                          metadata, digest, tokens, n)
"""


# A whole append in one statement: the batch (one array per column, in order), checked against
# what is stored (a known id with another digest; a tool result whose call is neither earlier
# in the batch nor stored), and only if it passes: the new rows (seq in batch order after the
# locked session's next_seq), their tool calls, and the session's cursors. It returns the
# cursors, how many rows it stored, and what refused it (batch positions, from 1; call ids).
_APPEND = """
WITH batch AS (
    SELECT * FROM unnest(%(ids)s::text[], %(roles)s::text[], %(contents)s::text[],
                         %(names)s::text[], %(times)s::timestamptz[], %(answers)s::text[],
                         %(tool_calls)s::text[], %(metadata)s::text[], %(digests)s::text[],
                         %(tokens)s::int[], %(full)s::int[])
        WITH ORDINALITY AS u(id, role, content, name, created_at, tool_call_id, tool_calls,
                             metadata, digest, tokens, full_tokens, n)
), known AS (
    SELECT m.id, m.digest FROM messages m
    WHERE m.tenant = %(tenant)s AND m.session = %(session)s AND m.id = ANY(%(ids)s::text[])
), conflicts AS (
    SELECT array_agg(b.n ORDER BY b.n) AS n FROM batch b JOIN known k ON k.id = b.id
    WHERE k.digest IS NOT NULL AND k.digest <> b.digest
), missing AS (
    SELECT array_agg(c) AS c FROM unnest(%(needed)s::text[]) AS c
    WHERE NOT EXISTS (SELECT 1 FROM tool_calls t WHERE t.tenant = %(tenant)s
                      AND t.session = %(session)s AND t.call_id = c)
), prior AS (
    SELECT recent_appended[array_position(recent_requests, %(request)s::text)] AS appended
    FROM sessions WHERE tenant = %(tenant)s AND session = %(session)s
), rerun AS (
    -- This request ran before and every id is stored: what it stored then is the answer
    -- (the content checks still apply: a copy with other content is refused as ever).
    SELECT (SELECT appended FROM prior) IS NOT NULL
           AND NOT EXISTS (SELECT 1 FROM batch b WHERE b.id NOT IN (SELECT id FROM known))
           AS yes
), erased AS (
    SELECT erased_at FROM sessions WHERE tenant = %(tenant)s AND session = %(session)s
), passed AS (
    SELECT (SELECT n FROM conflicts) IS NULL AND (SELECT c FROM missing) IS NULL
           AND (SELECT erased_at FROM erased) IS NULL AS ok
), head AS (
    SELECT next_seq FROM sessions WHERE tenant = %(tenant)s AND session = %(session)s
), fresh AS (
    SELECT b.*, row_number() OVER (ORDER BY b.n) - 1 AS k FROM batch b, passed
    WHERE passed.ok AND NOT EXISTS (SELECT 1 FROM known WHERE known.id = b.id)
), stored AS (
    INSERT INTO messages (tenant, session, id, seq, role, content, name, created_at,
                          tool_call_id, tool_calls, metadata, digest, tokens)
    SELECT %(tenant)s, %(session)s, f.id, head.next_seq + f.k, f.role, f.content, f.name,
           f.created_at, f.tool_call_id, f.tool_calls::jsonb, f.metadata::jsonb, f.digest,
           f.tokens
    FROM fresh f, head ORDER BY f.n
    RETURNING id
), calls AS (
    INSERT INTO tool_calls (tenant, session, call_id, message_id)
    SELECT %(tenant)s, %(session)s, u.c, u.m
    FROM unnest(%(call_ids)s::text[], %(call_messages)s::text[]) AS u(c, m)
    WHERE u.m IN (SELECT id FROM fresh)
    ON CONFLICT DO NOTHING
), cursors AS (
    UPDATE sessions SET next_seq = next_seq + (SELECT count(*) FROM fresh),
        window_tokens = window_tokens + (SELECT coalesce(sum(tokens), 0) FROM fresh),
        total_tokens = total_tokens + (SELECT coalesce(sum(full_tokens), 0) FROM fresh),
        rev = rev + 1, updated_at = now(),
        recent_requests = CASE WHEN %(request)s::text IS NULL
            OR (SELECT appended FROM prior) IS NOT NULL THEN recent_requests
            ELSE (recent_requests || %(request)s::text)
                 [greatest(1, cardinality(recent_requests) + 2 - %(recent)s):] END,
        recent_appended = CASE WHEN %(request)s::text IS NULL
            OR (SELECT appended FROM prior) IS NOT NULL THEN recent_appended
            ELSE (recent_appended || (SELECT count(*) FROM fresh)::int)
                 [greatest(1, cardinality(recent_appended) + 2 - %(recent)s):] END
    WHERE tenant = %(tenant)s AND session = %(session)s AND (SELECT ok FROM passed)
    RETURNING *
)
SELECT c.*, CASE WHEN (SELECT yes FROM rerun) THEN (SELECT appended FROM prior)
                 ELSE (SELECT count(*) FROM stored)::int END AS appended,
       (SELECT yes FROM rerun) AS rerun,
       (SELECT n FROM conflicts) AS conflicts, (SELECT c FROM missing) AS missing,
       (SELECT erased_at FROM erased) AS erased
FROM (SELECT 1) one LEFT JOIN cursors c ON true
"""
