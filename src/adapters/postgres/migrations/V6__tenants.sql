-- Kailash Gateway schema, version 6: tenant records. The tenant list of V1 (one row per
-- tenant that ever stored a session) becomes the tenants a platform administrator manages:
-- a name, an active flag, feature switches, the node types its workflows may use (empty:
-- every type) and its limits (a JSON object holding only the limits that are set). Rows
-- that existed before stay active with no limits, named by their id (`name` NULL), so an
-- upgrade keeps every tenant that had data working. The defaults make the change instant.
ALTER TABLE tenants
    ADD COLUMN name               text,
    ADD COLUMN active             boolean     NOT NULL DEFAULT true,
    ADD COLUMN features           jsonb       NOT NULL DEFAULT '{}',
    ADD COLUMN allowed_node_types text[]      NOT NULL DEFAULT '{}',
    ADD COLUMN limits             jsonb       NOT NULL DEFAULT '{}',
    ADD COLUMN updated_at         timestamptz NOT NULL DEFAULT now();
