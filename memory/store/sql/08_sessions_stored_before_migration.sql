-- sessions stored before migration 6 get their cursors: next seq after their last
-- message, the ledger head after their records, token counts estimated from the text
-- (4 characters a token, as the heuristic counter does), and a window version at that head
-- that starts from every message, so their window is compacted again on next use. Their
-- messages have no digest: re-sending one is taken as a duplicate.
ALTER TABLE messages NO FORCE ROW LEVEL SECURITY;
ALTER TABLE ledger NO FORCE ROW LEVEL SECURITY;
ALTER TABLE sessions NO FORCE ROW LEVEL SECURITY;
ALTER TABLE window_versions NO FORCE ROW LEVEL SECURITY;
UPDATE messages SET tokens = ceil(length(content) / 4.0)::int + 4
    WHERE tokens = 0 AND digest IS NULL;
INSERT INTO sessions (tenant, session, next_seq, ledger_head, window_tokens, total_tokens)
SELECT m.tenant, m.session, max(m.seq) + 1,
       (SELECT count(*) FROM ledger l WHERE l.tenant = m.tenant AND l.session = m.session),
       sum(m.tokens), sum(m.tokens)
FROM messages m GROUP BY m.tenant, m.session
ON CONFLICT DO NOTHING;
INSERT INTO window_versions (tenant, session, version, base_seq, kept_ids, summaries, tokens)
SELECT s.tenant, s.session, s.ledger_head, 0, '{{}}', '[]', 0
FROM sessions s WHERE s.ledger_head > 0
ON CONFLICT DO NOTHING;
ALTER TABLE tool_calls NO FORCE ROW LEVEL SECURITY;
INSERT INTO tool_calls (tenant, session, call_id, message_id)
SELECT m.tenant, m.session, c ->> 'id', m.id
FROM messages m, jsonb_array_elements(m.tool_calls) c
ON CONFLICT DO NOTHING;
ALTER TABLE tool_calls FORCE ROW LEVEL SECURITY;
ALTER TABLE messages FORCE ROW LEVEL SECURITY;
ALTER TABLE ledger FORCE ROW LEVEL SECURITY;
ALTER TABLE sessions FORCE ROW LEVEL SECURITY;
ALTER TABLE window_versions FORCE ROW LEVEL SECURITY;
