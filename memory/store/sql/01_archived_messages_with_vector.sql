-- archived messages, with vector and full-text search columns.
CREATE EXTENSION IF NOT EXISTS vector;
CREATE TABLE longthread_meta (key text PRIMARY KEY, value text NOT NULL);
INSERT INTO longthread_meta VALUES ('embedding_dim', {dim});
CREATE TABLE messages (
    tenant       text        NOT NULL,
    session      text        NOT NULL,
    id           text        NOT NULL,
    seq          bigint      NOT NULL,
    role         text        NOT NULL CHECK (role IN ('system','user','assistant','tool')),
    content      text        NOT NULL,
    name         text,
    created_at   timestamptz,
    tool_call_id text,
    tool_calls   jsonb       NOT NULL DEFAULT '[]',
    metadata     jsonb       NOT NULL DEFAULT '{{}}',
    embedding    vector({dim}),
    -- tsvector caps at 1 MB, and bodies may reach 2 MB: index the first 100k characters.
    tsv          tsvector GENERATED ALWAYS AS
                     (to_tsvector('english', left(content, 100000))) STORED,
    archived_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant, session, id)
);
CREATE INDEX messages_seq_idx ON messages (tenant, session, seq);
CREATE INDEX messages_time_idx ON messages (tenant, session, created_at);
CREATE INDEX messages_tsv_idx ON messages USING gin (tsv);
CREATE INDEX messages_embedding_idx ON messages
    USING hnsw (embedding vector_cosine_ops) WITH (m = 16, ef_construction = 64);
