-- Kailash Gateway schema, version 2: identity and access (the accounts port). Users, custom
-- roles, policies, API keys and the audit log are tenant-owned and keyed by tenant first.
-- Refresh tokens and revoked token ids are looked up by their random ids (jti, family id),
-- which a token carries signed; their rows still record the tenant.

CREATE TABLE users (
    tenant_id     text        NOT NULL,
    username      text        NOT NULL,
    password_hash text        NOT NULL,
    roles         text[]      NOT NULL,
    attributes    jsonb       NOT NULL,
    disabled      boolean     NOT NULL,
    failed_logins integer     NOT NULL,
    locked_until  timestamptz,
    totp_secret   text,
    totp_enabled  boolean     NOT NULL,
    created_at    timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, username)
);

CREATE TABLE refresh_tokens (
    jti        text PRIMARY KEY,
    family_id  text        NOT NULL,
    tenant_id  text        NOT NULL,
    username   text        NOT NULL,
    expires_at timestamptz NOT NULL,
    used_at    timestamptz
);
CREATE INDEX refresh_tokens_expiry ON refresh_tokens (expires_at);

CREATE TABLE revoked_tokens (
    id         text PRIMARY KEY,
    expires_at timestamptz NOT NULL
);
CREATE INDEX revoked_tokens_expiry ON revoked_tokens (expires_at);

CREATE TABLE api_keys (
    tenant_id  text        NOT NULL,
    key_id     text        NOT NULL UNIQUE,
    username   text        NOT NULL,
    name       text        NOT NULL,
    key_hash   text        NOT NULL UNIQUE,
    prefix     text        NOT NULL,
    scopes     text[]      NOT NULL,
    created_at timestamptz NOT NULL,
    expires_at timestamptz,
    revoked_at timestamptz,
    PRIMARY KEY (tenant_id, key_id)
);
CREATE INDEX api_keys_by_owner ON api_keys (tenant_id, username, created_at);

CREATE TABLE roles (
    tenant_id         text        NOT NULL,
    name              text        NOT NULL,
    permissions       text[]      NOT NULL,
    denied_node_types text[]      NOT NULL,
    created_at        timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, name)
);

CREATE TABLE policies (
    tenant_id  text        NOT NULL,
    policy_id  text        NOT NULL,
    text       text        NOT NULL,
    created_at timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, policy_id)
);

-- Append-only; written in batches.
CREATE TABLE audit_log (
    tenant_id text        NOT NULL,
    id        text        NOT NULL,
    at        timestamptz NOT NULL,
    user_id   text        NOT NULL,
    action    text        NOT NULL,
    outcome   text        NOT NULL,
    resource  text,
    client_ip text,
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX audit_log_by_time ON audit_log (tenant_id, at DESC);
