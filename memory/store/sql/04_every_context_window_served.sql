-- every context window served, so an auditor can replay what the model saw at turn N.
CREATE TABLE served_contexts (
    tenant     text        NOT NULL,
    session    text        NOT NULL,
    seq        integer     NOT NULL,
    turn       integer     NOT NULL,
    record     jsonb       NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant, session, seq)
);
CREATE INDEX served_contexts_turn_idx ON served_contexts (tenant, session, turn);
GRANT SELECT, INSERT ON served_contexts TO longthread_app;
ALTER TABLE served_contexts ENABLE ROW LEVEL SECURITY;
ALTER TABLE served_contexts FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON served_contexts
    USING (tenant = current_setting('app.tenant', true))
    WITH CHECK (tenant = current_setting('app.tenant', true));
