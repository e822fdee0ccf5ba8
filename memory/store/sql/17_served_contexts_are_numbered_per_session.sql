-- served contexts are numbered per session. Their numbers came from one sequence shared by
-- every tenant, so the numbers on a tenant's own records counted every other tenant's
-- context() calls, and their gaps timed them. `served_counters` holds each session's last
-- number; recording a context takes the next one in the same statement (an upsert, so two
-- calls of one session wait on each other for that statement only; a read still never
-- waits on the session row), and never one below a number of its own range the session
-- holds. Numbers already given stay as they were, so a `replay --seq N` an auditor wrote
-- down still names the same context; each session counts on from its highest. Clients and
-- workers of an older version, still running until they are replaced, go on drawing from
-- the old sequence: it jumps to 1,000,000,000 here, a range the counters never enter (the
-- newest context at a turn is found by when it was recorded), so no number is given twice.
-- The table is locked first: an older writer's insert waits for this migration, and the
-- seed sees every row (past the row-level policy, which the migrating owner is subject to
-- unless a superuser, as in migrations 5, 8, 9 and 16).
LOCK TABLE served_contexts IN ACCESS EXCLUSIVE MODE;
CREATE TABLE served_counters (
    tenant  text    NOT NULL,
    session text    NOT NULL,
    last    integer NOT NULL,
    PRIMARY KEY (tenant, session)
);
ALTER TABLE served_contexts NO FORCE ROW LEVEL SECURITY;
INSERT INTO served_counters (tenant, session, last)
    SELECT tenant, session, max(seq) FROM served_contexts GROUP BY tenant, session;
ALTER TABLE served_contexts FORCE ROW LEVEL SECURITY;
GRANT SELECT, INSERT, UPDATE ON served_counters TO longthread_app;
SELECT setval('served_contexts_seq', greatest(1000000000, last_value)) FROM served_contexts_seq;
ALTER TABLE served_counters ENABLE ROW LEVEL SECURITY;
ALTER TABLE served_counters FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON served_counters
    USING (tenant = current_setting('app.tenant', true))
    WITH CHECK (tenant = current_setting('app.tenant', true));
