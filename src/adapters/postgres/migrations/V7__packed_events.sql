-- Kailash Gateway schema, version 7: packed events. (Numbered 7, not 6: another branch adds
-- a V6; refinery applies each number once whatever order they arrive in.)
--
-- One row per event cost the server a heap tuple, a primary-key entry and a WAL record
-- each, about eight times per execution. A page holds a run of one session's events with
-- consecutive `seq`s, as one batch of the writer brought them: `seq` is `first_seq` plus
-- the event's position, every other field is an array in that order, and `published_at` is
-- the page's newest event (retention drops a page once all of its events are old enough).
-- A page's payloads are compressed with lz4 (cheap, and JSON texts of one session are
-- alike): written raw, a page filled most of a heap page by itself, and the bytes (new heap
-- pages, WAL) cost the server more than the rows they replaced. The writer keeps a page
-- small enough that it stays inline once compressed (no TOAST rows).
CREATE TABLE event_pages (
    tenant_id     text          NOT NULL,
    session_id    uuid          NOT NULL,
    first_seq     bigint        NOT NULL,
    last_seq      bigint        NOT NULL,
    published_at  timestamptz   NOT NULL,
    event_ids     uuid[]        NOT NULL,
    event_types   text[]        NOT NULL,
    user_ids      text[]        NOT NULL,
    published_ats timestamptz[] NOT NULL,
    payloads      text[]        COMPRESSION lz4 NOT NULL,
    PRIMARY KEY (tenant_id, session_id, first_seq)
);
CREATE INDEX event_pages_by_age ON event_pages USING brin (published_at)
    WITH (autosummarize = on);

-- The history written so far, moved: pages of up to 100 consecutive events.
INSERT INTO event_pages
    SELECT tenant_id, session_id, min(seq), max(seq), max(published_at),
        array_agg(event_id ORDER BY seq), array_agg(event_type ORDER BY seq),
        array_agg(user_id ORDER BY seq), array_agg(published_at ORDER BY seq),
        array_agg(payload ORDER BY seq)
    FROM (SELECT *, seq - row_number() OVER w AS run, (row_number() OVER w - 1) / 100 AS part
          FROM events WINDOW w AS (PARTITION BY tenant_id, session_id ORDER BY seq)) numbered
    GROUP BY tenant_id, session_id, run, part;
DROP TABLE events;

-- One row per event, as before, for whoever queries the history by hand.
CREATE VIEW events AS
    SELECT p.tenant_id, p.session_id, p.first_seq + e.n - 1 AS seq, e.event_id, e.event_type,
        e.user_id, e.published_at, e.payload
    FROM event_pages p,
        unnest(p.event_ids, p.event_types, p.user_ids, p.published_ats, p.payloads)
            WITH ORDINALITY AS e(event_id, event_type, user_id, published_at, payload, n);
