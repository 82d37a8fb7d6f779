-- Kailash Gateway schema, version 3: webhook registrations and their recorded deliveries.
-- Deliveries have no foreign key to their webhook on purpose: they are written in batches
-- after the fact, and one that lands after its webhook was deleted must not fail the batch.

CREATE TABLE webhooks (
    tenant_id               text        NOT NULL,
    webhook_id              uuid        NOT NULL,
    owner                   text        NOT NULL,
    owner_sees_all_sessions boolean     NOT NULL,
    url                     text        NOT NULL,
    secret                  text,
    event_types             text[]      NOT NULL,
    headers                 jsonb       NOT NULL,
    session_id              uuid,
    created_at              timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, webhook_id)
);

CREATE TABLE webhook_deliveries (
    tenant_id        text        NOT NULL,
    webhook_id       uuid        NOT NULL,
    delivery_id      uuid        NOT NULL,
    event_type       text        NOT NULL,
    event_seq        bigint      NOT NULL,
    status           text        NOT NULL,
    attempts         integer     NOT NULL,
    last_status_code integer,
    last_error       text,
    finished_at      timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, webhook_id, delivery_id)
);
CREATE INDEX webhook_deliveries_newest ON webhook_deliveries (tenant_id, webhook_id, finished_at DESC);
