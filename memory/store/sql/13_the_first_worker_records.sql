-- the first worker records which model makes the archive's vectors (`claim_embedder`),
-- whatever its login. The app may add that one key, once; it may change nothing.
GRANT INSERT ON longthread_meta TO longthread_app;
ALTER TABLE longthread_meta ENABLE ROW LEVEL SECURITY;
CREATE POLICY meta_read ON longthread_meta FOR SELECT USING (true);
CREATE POLICY meta_claim_embedder ON longthread_meta FOR INSERT
    WITH CHECK (key = 'embedder');
