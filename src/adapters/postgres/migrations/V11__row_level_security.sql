-- Kailash Gateway schema, version 11: row-level security. Every tenant-owned table gets a
-- policy that lets a statement see and write only the rows of the tenant its transaction
-- acts for, forced even on the tables' owner, so a query that forgets its `WHERE
-- tenant_id` cannot read or change another tenant's rows.
--
-- The gateway serves as the role `kailash_gateway` (NOLOGIN, NOBYPASSRLS), switched to at
-- connect (`-c role=kailash_gateway`): the login role of DATABASE_URL must be a member of
-- it, which this migration grants to the role that runs it. Migrations themselves run as
-- the login role, on their own connection. Each transaction says whom it acts for with
-- two transaction-local settings (see `Scope` in src/adapters/postgres/mod.rs):
--   kailash.tenant_id   = the tenant, for work on one tenant's behalf;
--   kailash.all_tenants = 'on', for the gateway's own cross-tenant work (the batched
--                         writer, group commits, start-up recovery, the shared tables'
--                         syncs, credential lookups that find the tenant).
-- A transaction that sets neither sees no rows and can write none.
--
-- Roles belong to the whole PostgreSQL cluster, not one database: several databases (or
-- nodes migrating at once) may race to create it, which is not an error.
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'kailash_gateway') THEN
        CREATE ROLE kailash_gateway NOLOGIN NOBYPASSRLS;
    END IF;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
    NULL;
END
$$;

DO $$
BEGIN
    IF NOT pg_has_role(current_user, 'kailash_gateway', 'MEMBER') THEN
        EXECUTE format('GRANT kailash_gateway TO %I', current_user);
    END IF;
EXCEPTION WHEN OTHERS THEN
    -- A concurrent grant of the same membership; anything else leaves it missing.
    IF NOT pg_has_role(current_user, 'kailash_gateway', 'MEMBER') THEN
        RAISE;
    END IF;
END
$$;

GRANT USAGE ON SCHEMA public TO kailash_gateway;
-- revoked_tokens holds random ids with no tenant (a revocation is found by the id a token
-- carries); the `events` view and refinery's history are not the gateway's to read.
GRANT SELECT, INSERT, UPDATE, DELETE ON
    tenants, sessions, workflow_versions, executions, running_executions, node_runs,
    event_pages, users, refresh_tokens, revoked_tokens, api_keys, roles, policies, audit_log,
    webhooks, webhook_deliveries
    TO kailash_gateway;
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO kailash_gateway;

DO $$
DECLARE
    owned text;
BEGIN
    FOREACH owned IN ARRAY ARRAY[
        'tenants', 'sessions', 'workflow_versions', 'executions', 'running_executions',
        'node_runs', 'event_pages', 'users', 'refresh_tokens', 'api_keys', 'roles',
        'policies', 'audit_log', 'webhooks', 'webhook_deliveries'
    ] LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', owned);
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', owned);
        -- The settings are read once per statement (an InitPlan), not once per row.
        EXECUTE format(
            'CREATE POLICY tenant_isolation ON %I '
            'USING (tenant_id = (SELECT current_setting(''kailash.tenant_id'', true)) '
            'OR (SELECT current_setting(''kailash.all_tenants'', true)) = ''on'')',
            owned);
    END LOOP;
END
$$;
