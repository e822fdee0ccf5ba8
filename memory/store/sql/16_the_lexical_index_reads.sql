-- the lexical index reads every script. Postgres's parser kept a run of CJK characters
-- between punctuation as one token (订单 never matched 我们的订单RF-77310在上周三发货), kept an
-- order id glued to CJK or a Korean particle, or followed by a right-to-left mark, inside
-- its token, told NFD text from NFC, and kept psycopg.errors.DeadlockDetected as one `host`
-- token (DeadlockDetected missed it). `longthread_search_text` rewrites a text before
-- to_tsvector, alike for a message's `tsv` and for every query (memory.store.search,
-- memory.store.tenant_search): NFC; fullwidth letters and digits as ASCII; zero-width and
-- bidi format marks dropped (U+200B, a zero-width space, becomes a space); a space between
-- an ASCII letter or digit and a letter of a non-Latin script; runs of CJK, kana, Hangul
-- and Thai as overlapping bigrams (所有权 -> 所有 有权); and the parts of each dotted
-- identifier with a part of 3 or more characters appended after the text (e.g. and a.m.
-- stay as they were). ASCII text without such identifiers comes back unchanged, so its
-- vector, and every English ranking, is what it was. The output is capped like the input
-- (100,000 characters, plus at most 20,000 of appended parts), far inside tsvector's 1 MB.
-- SET EXPRESSION rewrites the table (and rebuilds its indexes); then the postings of each
-- indexed message whose text the function changes are written again, the owner reading past
-- the policy as in migration 9. Messages past a session's lexical cursor have none yet.
CREATE FUNCTION longthread_search_text(doc text) RETURNS text
    LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
    AS $$
DECLARE
    t text := left(doc, 100000);
    parts text;
BEGIN
    IF octet_length(t) <> length(t) THEN  -- not ASCII only
        t := translate(normalize(t, NFC),
                       U&'\200B\200C\200D\200E\200F\202A\202B\202C\202D\202E\2066\2067\2068\2069\FEFF',
                       ' ');
        t := translate(t,
            '０１２３４５６７８９ＡＢＣＤＥＦＧＨＩＪＫＬＭＮＯＰＱＲＳＴＵＶＷＸＹＺａｂｃｄｅｆｇｈｉｊｋｌｍｎｏｐｑｒｓｔｕｖｗｘｙｚ－＿．＠',
            '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz-_.@');
        -- Hebrew on (U+0590..U+1CFF), CJK and Hangul, Yi, presentation forms, halfwidth kana
        -- and the supplementary ideographs; not Latin, Greek or Cyrillic (Müller stays whole).
        t := regexp_replace(t, '([A-Za-z0-9])([\u0590-\u1CFF\u2E80-\u2FDF\u3040-\u9FFF\uA000-\uA4CF\uA960-\uA97F\uAC00-\uD7FF\uF900-\uFAFF\uFB1D-\uFDFF\uFE70-\uFEFE\uFF66-\uFFDC\U00020000-\U0003FFFF])',
                            '\1 \2', 'g');
        t := regexp_replace(t, '([\u0590-\u1CFF\u2E80-\u2FDF\u3040-\u9FFF\uA000-\uA4CF\uA960-\uA97F\uAC00-\uD7FF\uF900-\uFAFF\uFB1D-\uFDFF\uFE70-\uFEFE\uFF66-\uFFDC\U00020000-\U0003FFFF])([A-Za-z0-9])',
                            '\1 \2', 'g');
        -- Each character with one of these on both sides is written twice: ABCD -> AB BC CD.
        -- (Thai, ideographs with 々〆〇, kana but not the ・ separator, Hangul syllables and
        -- jamo, halfwidth kana, the supplementary ideographs.)
        t := regexp_replace(t, '(?<=[\u0E01-\u0E3A\u0E40-\u0E4E\u3005-\u3007\u3040-\u309F\u30A0-\u30FA\u30FC-\u30FF\u3131-\u318E\u31F0-\u31FF\u3400-\u4DBF\u4E00-\u9FFF\uAC00-\uD7A3\uF900-\uFAFF\uFF66-\uFF9F\U00020000-\U0003FFFF])([\u0E01-\u0E3A\u0E40-\u0E4E\u3005-\u3007\u3040-\u309F\u30A0-\u30FA\u30FC-\u30FF\u3131-\u318E\u31F0-\u31FF\u3400-\u4DBF\u4E00-\u9FFF\uAC00-\uD7A3\uF900-\uFAFF\uFF66-\uFF9F\U00020000-\U0003FFFF])(?=[\u0E01-\u0E3A\u0E40-\u0E4E\u3005-\u3007\u3040-\u309F\u30A0-\u30FA\u30FC-\u30FF\u3131-\u318E\u31F0-\u31FF\u3400-\u4DBF\u4E00-\u9FFF\uAC00-\uD7A3\uF900-\uFAFF\uFF66-\uFF9F\U00020000-\U0003FFFF])',
                            '\1 \1', 'g');
        t := left(t, 100000);
    END IF;
    -- One scan first: most messages hold no dotted identifier, and the set-returning match
    -- below cost them as much again as to_tsvector itself.
    IF t !~ '[A-Za-z0-9_]\.[A-Za-z_]' THEN
        RETURN t;
    END IF;
    SELECT string_agg(translate(m[1], '.', ' '), ' ') INTO parts
    FROM regexp_matches(t, '([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)+)', 'g') AS m
    WHERE m[1] ~ '[A-Za-z0-9_]{{3}}';
    RETURN CASE WHEN parts IS NULL THEN t ELSE t || ' ' || left(parts, 20000) END;
END $$;
GRANT EXECUTE ON FUNCTION longthread_search_text(text) TO longthread_app;
ALTER TABLE messages ALTER COLUMN tsv SET EXPRESSION AS
    (to_tsvector('english', longthread_search_text(content)));
ALTER TABLE messages NO FORCE ROW LEVEL SECURITY;
ALTER TABLE message_terms NO FORCE ROW LEVEL SECURITY;
ALTER TABLE lexical_cursors NO FORCE ROW LEVEL SECURITY;
DELETE FROM message_terms t
    USING messages m JOIN lexical_cursors c
        ON c.tenant = m.tenant AND c.session = m.session AND m.seq < c.indexed_seq
    WHERE t.tenant = m.tenant AND t.session = m.session AND t.id = m.id
      AND longthread_search_text(m.content) IS DISTINCT FROM left(m.content, 100000);
INSERT INTO message_terms (tenant, session, lexeme, id, tf, doc_len)
SELECT m.tenant, m.session, u.lexeme, m.id, coalesce(cardinality(u.positions), 1),
       length(d.doc)
FROM messages m
     JOIN lexical_cursors c
         ON c.tenant = m.tenant AND c.session = m.session AND m.seq < c.indexed_seq,
     LATERAL (SELECT longthread_indexed(m.tsv, m.created_at) AS doc) d,
     unnest(d.doc) AS u
WHERE longthread_search_text(m.content) IS DISTINCT FROM left(m.content, 100000);
ALTER TABLE lexical_cursors FORCE ROW LEVEL SECURITY;
ALTER TABLE message_terms FORCE ROW LEVEL SECURITY;
ALTER TABLE messages FORCE ROW LEVEL SECURITY;
ANALYZE message_terms;
