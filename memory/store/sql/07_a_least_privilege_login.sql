-- a least-privilege login (a member of longthread_app) can check the schema version
-- at start, so a worker that may not migrate can say why instead of failing later.
GRANT SELECT ON schema_version, longthread_meta TO longthread_app;
