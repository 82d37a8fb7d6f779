-- Kailash Gateway schema, version 1: sessions, workflow versions, executions, node runs and
-- the event history. Every tenant-owned table starts its key with tenant_id, and every
-- query the gateway sends filters by it.

CREATE TABLE tenants (
    tenant_id  text PRIMARY KEY,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE sessions (
    tenant_id     text        NOT NULL REFERENCES tenants (tenant_id),
    session_id    uuid        NOT NULL,
    user_id       text        NOT NULL,
    metadata      jsonb       NOT NULL,
    created_at    timestamptz NOT NULL,
    last_activity timestamptz NOT NULL,
    ended_at      timestamptz,
    end_reason    text,
    PRIMARY KEY (tenant_id, session_id)
);
CREATE INDEX sessions_active ON sessions (tenant_id, created_at) WHERE ended_at IS NULL;

-- Each update of a workflow is a new row: the version history.
CREATE TABLE workflow_versions (
    tenant_id   text        NOT NULL,
    session_id  uuid        NOT NULL,
    workflow_id text        NOT NULL,
    version     integer     NOT NULL,
    definition  jsonb       NOT NULL,
    created_at  timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, session_id, workflow_id, version),
    FOREIGN KEY (tenant_id, session_id) REFERENCES sessions (tenant_id, session_id)
);

CREATE TABLE executions (
    tenant_id        text             NOT NULL,
    execution_id     uuid             NOT NULL,
    session_id       uuid             NOT NULL,
    user_id          text             NOT NULL,
    workflow_id      text             NOT NULL,
    workflow_name    text             NOT NULL,
    status           text             NOT NULL,
    progress         double precision NOT NULL,
    current_node     text,
    inputs           jsonb            NOT NULL,
    config_overrides jsonb            NOT NULL,
    outputs          jsonb            NOT NULL,
    node_states      jsonb            NOT NULL,
    error            text,
    created_at       timestamptz      NOT NULL,
    started_at       timestamptz,
    completed_at     timestamptz,
    PRIMARY KEY (tenant_id, execution_id)
);
CREATE INDEX executions_by_session ON executions (tenant_id, session_id, created_at);
CREATE INDEX executions_history ON executions (tenant_id, created_at DESC, execution_id DESC);
CREATE INDEX executions_running ON executions (tenant_id) WHERE status IN ('started', 'running');
CREATE INDEX executions_finished ON executions (tenant_id, completed_at) WHERE completed_at IS NOT NULL;

-- How each node of an execution ended (written in batches, after the fact).
CREATE TABLE node_runs (
    tenant_id         text             NOT NULL,
    execution_id      uuid             NOT NULL,
    node_id           text             NOT NULL,
    node_type         text             NOT NULL,
    status            text             NOT NULL,
    started_at        timestamptz,
    finished_at       timestamptz      NOT NULL,
    execution_time_ms double precision,
    outputs           jsonb            NOT NULL,
    error             text,
    PRIMARY KEY (tenant_id, execution_id, node_id)
);

-- Each session's event stream, as sent on the wire (payload is the exact JSON text).
CREATE TABLE events (
    tenant_id    text        NOT NULL,
    session_id   uuid        NOT NULL,
    seq          bigint      NOT NULL,
    event_id     uuid        NOT NULL,
    event_type   text        NOT NULL,
    user_id      text,
    published_at timestamptz NOT NULL,
    payload      text        NOT NULL,
    PRIMARY KEY (tenant_id, session_id, seq)
);
CREATE INDEX events_by_age ON events (tenant_id, published_at);
