-- the inverted index is written after the append returns, not inside it. Its postings
-- (about 15 rows a message, into a large primary key) were most of an append's database
-- time: 22 of 30 ms for 100 LoCoMo turns at 20k. `lexical_cursors` says how far each
-- session is indexed; `Store.index_terms` (run by the embedding activity) brings it up to
-- date, and the BM25 leg reads the messages past it straight from their text vectors,
-- so a search ranks exactly as if everything were indexed. Every message stored before
-- this was indexed by the trigger, so each session's cursor starts past its last message.
CREATE TABLE lexical_cursors (
    tenant      text   NOT NULL,
    session     text   NOT NULL,
    indexed_seq bigint NOT NULL,
    PRIMARY KEY (tenant, session)
);
-- The app may only move a cursor forward: back, it would count messages twice.
GRANT SELECT, INSERT, UPDATE (indexed_seq) ON lexical_cursors TO longthread_app;
CREATE FUNCTION lexical_cursor_forward() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.indexed_seq < OLD.indexed_seq THEN
        RAISE EXCEPTION 'lexical_cursors.indexed_seq may not move back (% to %)',
            OLD.indexed_seq, NEW.indexed_seq;
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER lexical_cursor_forward BEFORE UPDATE ON lexical_cursors
    FOR EACH ROW EXECUTE FUNCTION lexical_cursor_forward();
ALTER TABLE lexical_cursors ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON lexical_cursors
    USING (tenant = current_setting('app.tenant', true))
    WITH CHECK (tenant = current_setting('app.tenant', true));
DROP TRIGGER messages_index_terms ON messages;
DROP FUNCTION messages_index_terms();
ALTER TABLE messages NO FORCE ROW LEVEL SECURITY;
INSERT INTO lexical_cursors (tenant, session, indexed_seq)
SELECT tenant, session, max(seq) + 1 FROM messages GROUP BY tenant, session;
ALTER TABLE messages FORCE ROW LEVEL SECURITY;
ALTER TABLE lexical_cursors FORCE ROW LEVEL SECURITY;
