-- Kailash Gateway schema, version 12: an event page's events as one text.
--
-- V7 kept a page's events as five arrays, one per field: the id, type, user and time were
-- also in each event's JSON, and the server received every element of every array on its
-- own (a page of eight events: forty array elements, plus slicing the batch's arrays per
-- page). A page now holds its events' JSON texts joined by newlines (compact JSON has no raw
-- newline: one in a string is written `\n`), compressed with lz4 as one value; the other
-- fields are read from the JSON when a page is read, which is rare next to writing.
ALTER TABLE event_pages ADD COLUMN events text COMPRESSION lz4;
-- Row-level security (V11) holds the table's owner too: the rewrite acts for every tenant,
-- for this migration's transaction only.
SELECT set_config('kailash.all_tenants', 'on', true);
UPDATE event_pages SET events = array_to_string(payloads, E'\n');
ALTER TABLE event_pages ALTER COLUMN events SET NOT NULL;

DROP VIEW events;
ALTER TABLE event_pages
    DROP COLUMN event_ids,
    DROP COLUMN event_types,
    DROP COLUMN user_ids,
    DROP COLUMN published_ats,
    DROP COLUMN payloads;

-- One row per event, as before, for whoever queries the history by hand.
CREATE VIEW events AS
    SELECT p.tenant_id, p.session_id, p.first_seq + e.n - 1 AS seq,
        (e.payload::jsonb ->> 'id')::uuid AS event_id, e.payload::jsonb ->> 'type' AS event_type,
        e.payload::jsonb ->> 'user_id' AS user_id,
        (e.payload::jsonb ->> 'timestamp')::timestamptz AS published_at, e.payload
    FROM event_pages p,
        unnest(string_to_array(p.events, E'\n')) WITH ORDINALITY AS e(payload, n);
