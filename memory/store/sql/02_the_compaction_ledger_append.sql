-- the compaction ledger, append-only, and checkpoints.
CREATE TABLE ledger (
    tenant     text        NOT NULL,
    session    text        NOT NULL,
    seq        integer     NOT NULL,
    id         text        NOT NULL,
    record     jsonb       NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant, session, seq),
    UNIQUE (tenant, session, id)
);
CREATE FUNCTION ledger_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the compaction ledger is append-only';
END $$;
CREATE TRIGGER ledger_append_only BEFORE UPDATE OR DELETE ON ledger
    FOR EACH ROW EXECUTE FUNCTION ledger_append_only();
CREATE TABLE checkpoints (
    tenant     text        NOT NULL,
    session    text        NOT NULL,
    state      jsonb       NOT NULL,
    version    integer     NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant, session)
);
