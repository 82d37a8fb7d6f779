-- Kailash Gateway schema, version 9: every tenant that holds data has a tenant record. V1
-- wrote a tenants row only when a tenant stored its first session, and since V6 a token
-- naming a tenant without a record is refused; so a tenant that had users, API keys, roles,
-- policies or webhooks but never a session would have been locked out by the upgrade. Each
-- gets the row V6 gives old tenants: active, no limits, named by its id.
INSERT INTO tenants (tenant_id)
    SELECT tenant_id FROM users
    UNION SELECT tenant_id FROM api_keys
    UNION SELECT tenant_id FROM roles
    UNION SELECT tenant_id FROM policies
    UNION SELECT tenant_id FROM webhooks
ON CONFLICT (tenant_id) DO NOTHING;
