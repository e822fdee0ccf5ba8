-- tenant isolation in the database itself. Queries run as longthread_app with
-- app.tenant set per transaction; FORCE makes even the table owner obey the policy.
DO $$ BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'longthread_app') THEN
        CREATE ROLE longthread_app NOLOGIN;
    END IF;
END $$;
GRANT SELECT, INSERT ON messages, ledger, checkpoints TO longthread_app;
GRANT UPDATE ON checkpoints TO longthread_app;
GRANT UPDATE (embedding) ON messages TO longthread_app;
ALTER TABLE messages ENABLE ROW LEVEL SECURITY;
ALTER TABLE messages FORCE ROW LEVEL SECURITY;
ALTER TABLE ledger ENABLE ROW LEVEL SECURITY;
ALTER TABLE ledger FORCE ROW LEVEL SECURITY;
ALTER TABLE checkpoints ENABLE ROW LEVEL SECURITY;
ALTER TABLE checkpoints FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON messages
    USING (tenant = current_setting('app.tenant', true))
    WITH CHECK (tenant = current_setting('app.tenant', true));
CREATE POLICY tenant_isolation ON ledger
    USING (tenant = current_setting('app.tenant', true))
    WITH CHECK (tenant = current_setting('app.tenant', true));
CREATE POLICY tenant_isolation ON checkpoints
    USING (tenant = current_setting('app.tenant', true))
    WITH CHECK (tenant = current_setting('app.tenant', true));
