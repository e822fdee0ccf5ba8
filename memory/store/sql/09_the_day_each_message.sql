-- the day each message was sent is in its lexical index: "8 May 2023", as
-- memory.text.day_text writes it (and embeds it with the content), so a question about a
-- date finds that day's turns. `tsv` stays the content's own vector; message_terms, which
-- BM25 reads, indexes it plus the day's lexemes. Messages archived before this get theirs
-- by a backfill that the owner runs past the policy, as in migrations 5 and 8.
CREATE FUNCTION longthread_day(stamp timestamptz) RETURNS text
    LANGUAGE sql STABLE PARALLEL SAFE
    AS $$ SELECT to_char(stamp AT TIME ZONE 'UTC', 'FMDD FMMonth YYYY') $$;
CREATE FUNCTION longthread_indexed(doc tsvector, stamp timestamptz) RETURNS tsvector
    LANGUAGE sql STABLE PARALLEL SAFE
    AS $$ SELECT CASE WHEN stamp IS NULL THEN doc
                      ELSE doc || to_tsvector('english', longthread_day(stamp)) END $$;
GRANT EXECUTE ON FUNCTION longthread_day(timestamptz),
                          longthread_indexed(tsvector, timestamptz) TO longthread_app;
CREATE OR REPLACE FUNCTION messages_index_terms() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    doc tsvector := longthread_indexed(NEW.tsv, NEW.created_at);
BEGIN
    INSERT INTO message_terms (tenant, session, lexeme, id, tf, doc_len)
    SELECT NEW.tenant, NEW.session, u.lexeme, NEW.id,
           coalesce(cardinality(u.positions), 1), length(doc)
    FROM unnest(doc) AS u;
    RETURN NULL;
END $$;
ALTER TABLE messages NO FORCE ROW LEVEL SECURITY;
ALTER TABLE message_terms NO FORCE ROW LEVEL SECURITY;
DELETE FROM message_terms t USING messages m
    WHERE m.created_at IS NOT NULL
      AND t.tenant = m.tenant AND t.session = m.session AND t.id = m.id;
INSERT INTO message_terms (tenant, session, lexeme, id, tf, doc_len)
SELECT m.tenant, m.session, u.lexeme, m.id, coalesce(cardinality(u.positions), 1),
       length(d.doc)
FROM messages m,
     LATERAL (SELECT longthread_indexed(m.tsv, m.created_at) AS doc) d,
     unnest(d.doc) AS u
WHERE m.created_at IS NOT NULL;
ALTER TABLE message_terms FORCE ROW LEVEL SECURITY;
ALTER TABLE messages FORCE ROW LEVEL SECURITY;
ANALYZE message_terms;
