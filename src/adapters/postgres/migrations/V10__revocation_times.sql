-- Kailash Gateway schema, version 10: when each token id was revoked. Every node mirrors
-- the revoked ids in memory (reading what is new every second, by this column), so checking
-- a token on a request needs no statement; before, every authenticated request asked the
-- database. Rows from before are stamped now: the mirror reads them all at start anyway.
ALTER TABLE revoked_tokens ADD COLUMN revoked_at timestamptz NOT NULL DEFAULT now();
CREATE INDEX revoked_tokens_by_time ON revoked_tokens (revoked_at);
