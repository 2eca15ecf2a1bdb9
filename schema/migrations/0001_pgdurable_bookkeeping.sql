-- The pgdurable schema and the table that records which migrations are applied.
-- Everything pgdurable adds beyond pg_durable's own `df` surface lives in this
-- schema (SPEC A.1): worker leases, the workflow journal, extension nodes.

CREATE SCHEMA pgdurable;
COMMENT ON SCHEMA pgdurable IS 'pgdurable runtime: journal, leases, extension nodes, bookkeeping';

CREATE TABLE pgdurable.schema_migrations (
    version    integer PRIMARY KEY CHECK (version > 0),
    name       text NOT NULL,
    checksum   text NOT NULL CHECK (checksum ~ '^[0-9a-f]{64}$'),
    applied_at timestamptz NOT NULL DEFAULT now(),
    applied_by name NOT NULL DEFAULT current_user
);
COMMENT ON TABLE pgdurable.schema_migrations IS 'one row per applied schema/migrations/NNNN_*.sql file';
