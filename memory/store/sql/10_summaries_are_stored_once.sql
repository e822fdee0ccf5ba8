-- summaries are stored once, in their own table, and a window version lists the ids
-- of the summaries in it. Before, every version held a copy of each of its summaries, so
-- the table grew with (versions × summaries): 18 GB after 1M messages. A summary's id is
-- unique in its session (derived from its record's seq); the store refuses a second body
-- under a known id. Versions stored before this are split into the two tables here.
CREATE TABLE summaries (
    tenant     text        NOT NULL,
    session    text        NOT NULL,
    id         text        NOT NULL,
    summary    jsonb       NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant, session, id)
);
GRANT SELECT, INSERT ON summaries TO longthread_app;
ALTER TABLE summaries ENABLE ROW LEVEL SECURITY;
ALTER TABLE summaries FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON summaries
    USING (tenant = current_setting('app.tenant', true))
    WITH CHECK (tenant = current_setting('app.tenant', true));
ALTER TABLE window_versions ADD COLUMN summary_ids text[] NOT NULL DEFAULT '{{}}';
ALTER TABLE window_versions NO FORCE ROW LEVEL SECURITY;
ALTER TABLE summaries NO FORCE ROW LEVEL SECURITY;
INSERT INTO summaries (tenant, session, id, summary)
SELECT DISTINCT ON (w.tenant, w.session, s.value ->> 'id') w.tenant, w.session,
       s.value ->> 'id', s.value
FROM window_versions w, jsonb_array_elements(w.summaries) s
ORDER BY w.tenant, w.session, s.value ->> 'id', w.version DESC;
UPDATE window_versions w SET summary_ids = ARRAY(
    SELECT s.value ->> 'id' FROM jsonb_array_elements(w.summaries) WITH ORDINALITY s
    ORDER BY s.ordinality);
ALTER TABLE window_versions DROP COLUMN summaries;
ALTER TABLE window_versions FORCE ROW LEVEL SECURITY;
ALTER TABLE summaries FORCE ROW LEVEL SECURITY;
