"""Schema migrations: an ordered list plus a version table, applied by an explicit `setup()`.

Idempotent and safe to run from several processes at once (an advisory lock serialises them).
The embedding column is sized by the configured embedder; the size is recorded, and a later
setup with another size fails with a clear error instead of corrupting the archive.
"""

from __future__ import annotations

from typing import Any

from psycopg import AsyncConnection, sql
from psycopg.rows import tuple_row

from memory.errors import InvalidInputError
from memory.store.schema_check import check_not_newer

__all__ = ["MIGRATIONS", "migrate", "setup"]

_LOCK_KEY = 7_420_117  # arbitrary constant for pg_advisory_lock

MIGRATIONS: list[sql.SQL] = [
    # 1: archived messages, with vector and full-text search columns.
    sql.SQL("""
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
    """),
    # 2: the compaction ledger, append-only, and checkpoints.
    sql.SQL("""
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
    """),
    # 3: tenant isolation in the database itself. Queries run as longthread_app with
    # app.tenant set per transaction; FORCE makes even the table owner obey the policy.
    sql.SQL("""
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
    """),
    # 4: every context window served, so an auditor can replay what the model saw at turn N.
    sql.SQL("""
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
    """),
    # 5: an inverted index for BM25, one row per (message, lexeme). Row-level security stops
    # Postgres from using the GIN index on tsv (`@@` is not leakproof, so it may not run before
    # the tenant policy), which made every lexical search a scan of the whole session. Plain
    # btree equality is leakproof: this table is searched through its primary key under the
    # same policy, and carries what BM25 needs (term and document frequency, length).
    sql.SQL("""
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
    """),
    # 6: Postgres holds the conversation, the workflow only cursors. Per session: the cursors
    # (`sessions`, one row, locked by each write so seqs are assigned in order), the digest and
    # window tokens of each message, open tool calls, and window versions (one per ledger record,
    # committed with it). A version is its summaries + the ids kept from before `base_seq`;
    # every message from `base_seq` on is in the window too. Compaction events and served
    # contexts are stored here as well; served contexts take their seq from a sequence, so a
    # read never waits on the session row.
    sql.SQL("""
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
    """),
    # 7: a least-privilege login (a member of longthread_app) can check the schema version
    # at start, so a worker that may not migrate can say why instead of failing later.
    sql.SQL("""
    GRANT SELECT ON schema_version, longthread_meta TO longthread_app;
    """),
    # 8: sessions stored before migration 6 get their cursors: next seq after their last
    # message, the ledger head after their records, token counts estimated from the text
    # (4 characters a token, as the heuristic counter does), and a window version at that head
    # that starts from every message, so their window is compacted again on next use. Their
    # messages have no digest: re-sending one is taken as a duplicate.
    sql.SQL("""
    ALTER TABLE messages NO FORCE ROW LEVEL SECURITY;
    ALTER TABLE ledger NO FORCE ROW LEVEL SECURITY;
    ALTER TABLE sessions NO FORCE ROW LEVEL SECURITY;
    ALTER TABLE window_versions NO FORCE ROW LEVEL SECURITY;
    UPDATE messages SET tokens = ceil(length(content) / 4.0)::int + 4
        WHERE tokens = 0 AND digest IS NULL;
    INSERT INTO sessions (tenant, session, next_seq, ledger_head, window_tokens, total_tokens)
    SELECT m.tenant, m.session, max(m.seq) + 1,
           (SELECT count(*) FROM ledger l WHERE l.tenant = m.tenant AND l.session = m.session),
           sum(m.tokens), sum(m.tokens)
    FROM messages m GROUP BY m.tenant, m.session
    ON CONFLICT DO NOTHING;
    INSERT INTO window_versions (tenant, session, version, base_seq, kept_ids, summaries, tokens)
    SELECT s.tenant, s.session, s.ledger_head, 0, '{{}}', '[]', 0
    FROM sessions s WHERE s.ledger_head > 0
    ON CONFLICT DO NOTHING;
    ALTER TABLE tool_calls NO FORCE ROW LEVEL SECURITY;
    INSERT INTO tool_calls (tenant, session, call_id, message_id)
    SELECT m.tenant, m.session, c ->> 'id', m.id
    FROM messages m, jsonb_array_elements(m.tool_calls) c
    ON CONFLICT DO NOTHING;
    ALTER TABLE tool_calls FORCE ROW LEVEL SECURITY;
    ALTER TABLE messages FORCE ROW LEVEL SECURITY;
    ALTER TABLE ledger FORCE ROW LEVEL SECURITY;
    ALTER TABLE sessions FORCE ROW LEVEL SECURITY;
    ALTER TABLE window_versions FORCE ROW LEVEL SECURITY;
    """),
    # 9: the day each message was sent is in its lexical index: "8 May 2023", as
    # memory.text.day_text writes it (and embeds it with the content), so a question about a
    # date finds that day's turns. `tsv` stays the content's own vector; message_terms, which
    # BM25 reads, indexes it plus the day's lexemes. Messages archived before this get theirs
    # by a backfill that the owner runs past the policy, as in migrations 5 and 8.
    sql.SQL("""
    CREATE FUNCTION longthread_day(stamp timestamptz) RETURNS text
        LANGUAGE sql STABLE PARALLEL SAFE
        AS $$ SELECT to_char(stamp AT TIME ZONE 'UTC', 'FMDD FMMonth YYYY') $$;
    CREATE FUNCTION longthread_indexed(doc tsvector, stamp timestamptz) RETURNS tsvector
        LANGUAGE sql STABLE PARALLEL SAFE
        AS $$ SELECT CASE WHEN stamp IS NULL THEN doc
                          ELSE doc || to_tsvector('english', longthread_day(stamp)) END $$;
    GRANT EXECUTE ON FUNCTION longthread_day(timestamptz),
                              longthread_indexed(tsvector, timestamptz) TO longthread_app;
    CREATE OR REPLACE FUNCTION messages_index_terms() RETURNS trigger LANGUAGE plpgsql AS $$
    DECLARE
        doc tsvector := longthread_indexed(NEW.tsv, NEW.created_at);
    BEGIN
        INSERT INTO message_terms (tenant, session, lexeme, id, tf, doc_len)
        SELECT NEW.tenant, NEW.session, u.lexeme, NEW.id,
               coalesce(cardinality(u.positions), 1), length(doc)
        FROM unnest(doc) AS u;
        RETURN NULL;
    END $$;
    ALTER TABLE messages NO FORCE ROW LEVEL SECURITY;
    ALTER TABLE message_terms NO FORCE ROW LEVEL SECURITY;
    DELETE FROM message_terms t USING messages m
        WHERE m.created_at IS NOT NULL
          AND t.tenant = m.tenant AND t.session = m.session AND t.id = m.id;
    INSERT INTO message_terms (tenant, session, lexeme, id, tf, doc_len)
    SELECT m.tenant, m.session, u.lexeme, m.id, coalesce(cardinality(u.positions), 1),
           length(d.doc)
    FROM messages m,
         LATERAL (SELECT longthread_indexed(m.tsv, m.created_at) AS doc) d,
         unnest(d.doc) AS u
    WHERE m.created_at IS NOT NULL;
    ALTER TABLE message_terms FORCE ROW LEVEL SECURITY;
    ALTER TABLE messages FORCE ROW LEVEL SECURITY;
    ANALYZE message_terms;
    """),
    # 10: summaries are stored once, in their own table, and a window version lists the ids
    # of the summaries in it. Before, every version held a copy of each of its summaries, so
    # the table grew with (versions × summaries): 18 GB after 1M messages. A summary's id is
    # unique in its session (derived from its record's seq); the store refuses a second body
    # under a known id. Versions stored before this are split into the two tables here.
    sql.SQL("""
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
    """),
    # 11: the tables a burst of appends fills are vacuumed soon after it. Until a page is
    # vacuumed, the BM25 leg's index-only scans of message_terms visit the table for every
    # posting, and the first reader sets hint bits and writes pages out itself: 321 ms for one
    # search right after 20k appends to a 10k session, 30 ms once vacuumed (EXPLAIN ANALYZE),
    # and seconds under load. By default autovacuum waits for 20% growth of the table.
    sql.SQL("""
    ALTER TABLE message_terms SET (autovacuum_vacuum_insert_threshold = 20000,
                                   autovacuum_vacuum_insert_scale_factor = 0.01);
    ALTER TABLE messages SET (autovacuum_vacuum_insert_threshold = 2000,
                              autovacuum_vacuum_insert_scale_factor = 0.01);
    """),
    # 12: the inverted index is written after the append returns, not inside it. Its postings
    # (about 15 rows a message, into a large primary key) were most of an append's database
    # time: 22 of 30 ms for 100 LoCoMo turns at 20k. `lexical_cursors` says how far each
    # session is indexed; `Store.index_terms` (run by the embedding activity) brings it up to
    # date, and the BM25 leg reads the messages past it straight from their text vectors,
    # so a search ranks exactly as if everything were indexed. Every message stored before
    # this was indexed by the trigger, so each session's cursor starts past its last message.
    sql.SQL("""
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
    """),
    # 13: the first worker records which model makes the archive's vectors (`claim_embedder`),
    # whatever its login. The app may add that one key, once; it may change nothing.
    sql.SQL("""
    GRANT INSERT ON longthread_meta TO longthread_app;
    ALTER TABLE longthread_meta ENABLE ROW LEVEL SECURITY;
    CREATE POLICY meta_read ON longthread_meta FOR SELECT USING (true);
    CREATE POLICY meta_claim_embedder ON longthread_meta FOR INSERT
        WITH CHECK (key = 'embedder');
    """),
    # 14: the session's last appends by request id and how many each stored, so an append
    # run again (its workflow task was lost after the transaction committed) reports what it
    # stored the first time instead of "all duplicates". Bounded (`RECENT_REQUESTS`), in the
    # row every append already locks and updates.
    sql.SQL("""
    ALTER TABLE sessions ADD COLUMN recent_requests text[] NOT NULL DEFAULT ARRAY[]::text[],
                         ADD COLUMN recent_appended integer[] NOT NULL DEFAULT ARRAY[]::integer[];
    """),
    # 15: erasure (`longthread db erase`, run by an admin: the app may delete nothing). An erased
    # session keeps only its `sessions` row, marked `erased_at`, with its cursors at zero:
    # every write locks that row and refuses, so a worker still running for the session
    # cannot write again. The ledger stays append-only, except that the rows of an erased
    # session may be deleted.
    sql.SQL("""
    ALTER TABLE sessions ADD COLUMN erased_at timestamptz;
    CREATE OR REPLACE FUNCTION ledger_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP = 'DELETE' AND EXISTS (
                SELECT 1 FROM sessions s WHERE s.tenant = OLD.tenant
                AND s.session = OLD.session AND s.erased_at IS NOT NULL) THEN
            RETURN OLD;
        END IF;
        RAISE EXCEPTION 'the compaction ledger is append-only';
    END $$;
    """),
]


async def migrate(url: str, embedding_dim: int = 384, embedder: str | None = None) -> int:
    """Open a short-lived connection and run `setup` on it."""
    async with await AsyncConnection.connect(url, autocommit=True) as conn:
        return await setup(conn, embedding_dim, embedder)


async def _scalar(conn: AsyncConnection[Any], query: str) -> Any:
    async with conn.cursor(row_factory=tuple_row) as cur:
        await cur.execute(query)
        row = await cur.fetchone()
    return row[0] if row else None


async def setup(conn: AsyncConnection[Any], embedding_dim: int = 384,
                embedder: str | None = None) -> int:
    """Apply every pending migration; returns the schema version now in force. With
    `embedder`, the archive keeps to that model's vectors (`claim_embedder`)."""
    if not 1 <= embedding_dim <= 16_000:
        raise InvalidInputError("embedding_dim", "must be between 1 and 16000")
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_version ("
            " version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        current = int(await _scalar(conn, "SELECT coalesce(max(version), 0) FROM schema_version"))
        check_not_newer(current, len(MIGRATIONS), "longthread")
        for version, statement in enumerate(MIGRATIONS, start=1):
            if version <= current:
                continue
            await conn.execute(statement.format(dim=sql.Literal(embedding_dim)))
            await conn.execute("INSERT INTO schema_version (version) VALUES (%s)", (version,))
            current = version
        check_embedding_dim(await stored_embedding_dim(conn), embedding_dim)
        if embedder is not None:
            await claim_embedder(conn, embedder)
    return current


async def stored_schema_version(conn: AsyncConnection[Any]) -> int:
    """The archive's schema version: 0 before the first migration, even with no table yet."""
    if not await _scalar(conn, "SELECT to_regclass('schema_version') IS NOT NULL"):
        return 0
    return int(await _scalar(conn, "SELECT coalesce(max(version), 0) FROM schema_version"))


async def stored_embedding_dim(conn: AsyncConnection[Any]) -> int | None:
    """The vector size the archive was created for; None before the first migration."""
    value = await _scalar(conn, "SELECT value FROM longthread_meta WHERE key = 'embedding_dim'")
    return None if value is None else int(value)


def check_embedding_dim(stored: int | None, embedding_dim: int) -> None:
    """Vectors of another size would fail every embed with pgvector's own error: refuse here."""
    if stored is not None and stored != embedding_dim:
        raise InvalidInputError(
            "embedding_dim", f"the archive was created for {stored}-dimensional embeddings, "
            f"not {embedding_dim} (LONGTHREAD_EMBEDDER and LONGTHREAD_EMBEDDING_DIM must match "
            "the archive)")


async def stored_embedder(conn: AsyncConnection[Any]) -> str | None:
    """The model whose vectors the archive holds; None until a worker or setup named one."""
    value = await _scalar(conn, "SELECT value FROM longthread_meta WHERE key = 'embedder'")
    return None if value is None else str(value)


async def claim_embedder(conn: AsyncConnection[Any], embedder: str) -> None:
    """The first model to index an archive keeps it. Vectors of two models are not
    comparable even at one size (openai's default of 384 dimensions is MiniLM's size), so a
    session indexed by one and queried by the other would rank by noise, with no error."""
    await conn.execute("INSERT INTO longthread_meta VALUES ('embedder', %s)"
                       " ON CONFLICT (key) DO NOTHING", (embedder,))
    check_embedder(await stored_embedder(conn), embedder)


def check_embedder(stored: str | None, embedder: str) -> None:
    if stored is not None and stored != embedder:
        raise InvalidInputError(
            "LONGTHREAD_EMBEDDER", f"the archive holds vectors made by {stored!r}, and these "
            f"settings make them with {embedder!r}; two models' vectors cannot be compared. "
            "Set LONGTHREAD_EMBEDDER (local: all-MiniLM-L6-v2, mpnet: all-mpnet-base-v2, "
            "openai: openai:<LONGTHREAD_OPENAI_EMBEDDING_MODEL>) to the archive's model, or "
            "use a new archive (LONGTHREAD_DATABASE_URL or LONGTHREAD_DATA_DIR)")
