-- an inverted index for BM25, one row per (message, lexeme). Row-level security stops
-- Postgres from using the GIN index on tsv (`@@` is not leakproof, so it may not run before
-- the tenant policy), which made every lexical search a scan of the whole session. Plain
-- btree equality is leakproof: this table is searched through its primary key under the
-- same policy, and carries what BM25 needs (term and document frequency, length).
CREATE TABLE message_terms (
    tenant  text    NOT NULL,
    session text    NOT NULL,
    lexeme  text    NOT NULL,
    id      text    NOT NULL,
    tf      integer NOT NULL,
    doc_len integer NOT NULL,
    PRIMARY KEY (tenant, session, lexeme, id) INCLUDE (tf, doc_len)
);
CREATE FUNCTION messages_index_terms() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO message_terms (tenant, session, lexeme, id, tf, doc_len)
    SELECT NEW.tenant, NEW.session, u.lexeme, NEW.id,
           coalesce(cardinality(u.positions), 1), length(NEW.tsv)
    FROM unnest(NEW.tsv) AS u;
    RETURN NULL;
END $$;
CREATE TRIGGER messages_index_terms AFTER INSERT ON messages
    FOR EACH ROW EXECUTE FUNCTION messages_index_terms();
-- Backfill what is archived already: the owner reads past the policy for this one step.
ALTER TABLE messages NO FORCE ROW LEVEL SECURITY;
INSERT INTO message_terms (tenant, session, lexeme, id, tf, doc_len)
SELECT m.tenant, m.session, u.lexeme, m.id, coalesce(cardinality(u.positions), 1),
       length(m.tsv)
FROM messages m, unnest(m.tsv) AS u;
ALTER TABLE messages FORCE ROW LEVEL SECURITY;
DROP INDEX messages_tsv_idx;
GRANT SELECT, INSERT ON message_terms TO longthread_app;
ALTER TABLE message_terms ENABLE ROW LEVEL SECURITY;
ALTER TABLE message_terms FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON message_terms
    USING (tenant = current_setting('app.tenant', true))
    WITH CHECK (tenant = current_setting('app.tenant', true));
ANALYZE message_terms;
