-- the session's last appends by request id and how many each stored, so an append
-- run again (its workflow task was lost after the transaction committed) reports what it
-- stored the first time instead of "all duplicates". Bounded (`RECENT_REQUESTS`), in the
-- row every append already locks and updates.
ALTER TABLE sessions ADD COLUMN recent_requests text[] NOT NULL DEFAULT ARRAY[]::text[],
                     ADD COLUMN recent_appended integer[] NOT NULL DEFAULT ARRAY[]::integer[];
