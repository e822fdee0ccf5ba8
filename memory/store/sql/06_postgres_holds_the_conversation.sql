-- Postgres holds the conversation, the workflow only cursors. Per session: the cursors
-- (`sessions`, one row, locked by each write so seqs are assigned in order), the digest and
-- window tokens of each message, open tool calls, and window versions (one per ledger record,
-- committed with it). A version is its summaries + the ids kept from before `base_seq`;
-- every message from `base_seq` on is in the window too. Compaction events and served
-- contexts are stored here as well; served contexts take their seq from a sequence, so a
-- read never waits on the session row.
ALTER TABLE messages ADD COLUMN digest text;
ALTER TABLE messages ADD COLUMN tokens integer NOT NULL DEFAULT 0;
CREATE INDEX messages_unembedded_idx ON messages (tenant, session, seq)
    WHERE embedding IS NULL;
CREATE TABLE sessions (
    tenant        text        NOT NULL,
    session       text        NOT NULL,
    next_seq      bigint      NOT NULL DEFAULT 0,
    ledger_head   integer     NOT NULL DEFAULT 0,
    window_tokens bigint      NOT NULL DEFAULT 0,
    total_tokens  bigint      NOT NULL DEFAULT 0,
    rev           bigint      NOT NULL DEFAULT 0,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant, session)
);
CREATE TABLE tool_calls (
    tenant     text NOT NULL,
    session    text NOT NULL,
    call_id    text NOT NULL,
    message_id text NOT NULL,
    PRIMARY KEY (tenant, session, call_id)
);
CREATE TABLE window_versions (
    tenant     text        NOT NULL,
    session    text        NOT NULL,
    version    integer     NOT NULL,
    base_seq   bigint      NOT NULL,
    kept_ids   text[]      NOT NULL,
    summaries  jsonb       NOT NULL,
    tokens     integer     NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant, session, version)
);
CREATE TABLE compaction_events (
    tenant     text        NOT NULL,
    session    text        NOT NULL,
    id         bigserial,
    event      jsonb       NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant, session, id)
);
CREATE SEQUENCE served_contexts_seq;
GRANT USAGE ON SEQUENCE served_contexts_seq, compaction_events_id_seq TO longthread_app;
GRANT SELECT, INSERT, UPDATE ON sessions TO longthread_app;
GRANT SELECT, INSERT ON tool_calls, window_versions, compaction_events TO longthread_app;
ALTER TABLE sessions ENABLE ROW LEVEL SECURITY;
ALTER TABLE sessions FORCE ROW LEVEL SECURITY;
ALTER TABLE tool_calls ENABLE ROW LEVEL SECURITY;
ALTER TABLE tool_calls FORCE ROW LEVEL SECURITY;
ALTER TABLE window_versions ENABLE ROW LEVEL SECURITY;
ALTER TABLE window_versions FORCE ROW LEVEL SECURITY;
ALTER TABLE compaction_events ENABLE ROW LEVEL SECURITY;
ALTER TABLE compaction_events FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON sessions
    USING (tenant = current_setting('app.tenant', true))
    WITH CHECK (tenant = current_setting('app.tenant', true));
CREATE POLICY tenant_isolation ON tool_calls
    USING (tenant = current_setting('app.tenant', true))
    WITH CHECK (tenant = current_setting('app.tenant', true));
CREATE POLICY tenant_isolation ON window_versions
    USING (tenant = current_setting('app.tenant', true))
    WITH CHECK (tenant = current_setting('app.tenant', true));
CREATE POLICY tenant_isolation ON compaction_events
    USING (tenant = current_setting('app.tenant', true))
    WITH CHECK (tenant = current_setting('app.tenant', true));
