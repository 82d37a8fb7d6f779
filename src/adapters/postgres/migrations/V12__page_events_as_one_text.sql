-- Kailash Gateway schema, version 12: an event page's events as one text.
--
-- V7 kept a page's events as five arrays, one per field: the id, type, user and time were
-- also in each event's JSON, and the server received every element of every array on its
-- own (a page of eight events: forty array elements, plus slicing the batch's arrays per
-- page). A page now holds its events' JSON texts joined by newlines (compact JSON has no raw
-- newline: one in a string is written `\n`), compressed with lz4 as one value; the other
-- fields are read from the JSON when a page is read, which is rare next to writing.
--
-- Expand only, so that a rolling upgrade loses nothing: nodes of the previous version keep
-- running against this schema until they are replaced. Pages they write (the arrays, no
-- `events`) are read by the new code through `array_to_string(payloads, ...)`; pages the new
-- code writes (`events`, the arrays left at their empty defaults) read as empty to an old
-- node. Nothing is rewritten: a large history migrates instantly. Dropping the arrays is for
-- a later version, once no node of the previous one can be running.
ALTER TABLE event_pages ADD COLUMN events text COMPRESSION lz4;
ALTER TABLE event_pages
    ALTER COLUMN event_ids SET DEFAULT '{}',
    ALTER COLUMN event_types SET DEFAULT '{}',
    ALTER COLUMN user_ids SET DEFAULT '{}',
    ALTER COLUMN published_ats SET DEFAULT '{}',
    ALTER COLUMN payloads SET DEFAULT '{}';

-- One row per event, as before, for whoever queries the history by hand; from either layout.
CREATE OR REPLACE VIEW events AS
    SELECT p.tenant_id, p.session_id, p.first_seq + e.n - 1 AS seq,
        (e.payload::jsonb ->> 'id')::uuid AS event_id, e.payload::jsonb ->> 'type' AS event_type,
        e.payload::jsonb ->> 'user_id' AS user_id,
        (e.payload::jsonb ->> 'timestamp')::timestamptz AS published_at, e.payload
    FROM event_pages p,
        unnest(string_to_array(COALESCE(p.events, array_to_string(p.payloads, E'\n')), E'\n'))
            WITH ORDINALITY AS e(payload, n);
