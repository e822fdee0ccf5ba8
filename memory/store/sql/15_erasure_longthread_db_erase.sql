-- erasure (`longthread db erase`, run by an admin: the app may delete nothing). An erased
-- session keeps only its `sessions` row, marked `erased_at`, with its cursors at zero:
-- every write locks that row and refuses, so a worker still running for the session
-- cannot write again. The ledger stays append-only, except that the rows of an erased
-- session may be deleted.
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
