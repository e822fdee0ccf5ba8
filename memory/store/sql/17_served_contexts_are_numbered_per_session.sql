-- served contexts are numbered per session. Their numbers came from one sequence shared by
-- every tenant, so the numbers on a tenant's own records counted every other tenant's
-- context() calls, and their gaps timed them. `served_counters` holds each session's last
-- number; recording a context takes the next one in the same statement (an upsert, so two
-- calls of one session wait on each other for that statement only; a read still never
-- waits on the session row). Numbers already given stay as they were, so a `replay --seq N`
-- an auditor wrote down still names the same context; each session counts on from its
-- highest. Clients and workers of an older version, still running until they are replaced,
-- go on drawing from the old sequence: it jumps to 1,000,000,000 here, so what they record
-- never takes a number a session's counter gives (they start far below it), and nothing
-- they serve fails.
CREATE TABLE served_counters (
    tenant  text    NOT NULL,
    session text    NOT NULL,
    last    integer NOT NULL,
    PRIMARY KEY (tenant, session)
);
INSERT INTO served_counters (tenant, session, last)
    SELECT tenant, session, max(seq) FROM served_contexts GROUP BY tenant, session;
GRANT SELECT, INSERT, UPDATE ON served_counters TO longthread_app;
SELECT setval('served_contexts_seq', greatest(1000000000, last_value)) FROM served_contexts_seq;
ALTER TABLE served_counters ENABLE ROW LEVEL SECURITY;
ALTER TABLE served_counters FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON served_counters
    USING (tenant = current_setting('app.tenant', true))
    WITH CHECK (tenant = current_setting('app.tenant', true));
