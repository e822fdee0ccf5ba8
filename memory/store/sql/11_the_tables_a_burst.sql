-- the tables a burst of appends fills are vacuumed soon after it. Until a page is
-- vacuumed, the BM25 leg's index-only scans of message_terms visit the table for every
-- posting, and the first reader sets hint bits and writes pages out itself: 321 ms for one
-- search right after 20k appends to a 10k session, 30 ms once vacuumed (EXPLAIN ANALYZE),
-- and seconds under load. By default autovacuum waits for 20% growth of the table.
ALTER TABLE message_terms SET (autovacuum_vacuum_insert_threshold = 20000,
                               autovacuum_vacuum_insert_scale_factor = 0.01);
ALTER TABLE messages SET (autovacuum_vacuum_insert_threshold = 2000,
                          autovacuum_vacuum_insert_scale_factor = 0.01);
