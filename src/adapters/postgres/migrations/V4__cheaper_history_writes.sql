-- Kailash Gateway schema, version 4: cheaper history writes. Every execution writes about
-- eight events and updates its row once, thousands of times a second under load; the
-- indexes dropped here were maintained on each of those writes for rare readers.

-- A btree in time order: every insert went to its rightmost page, so concurrent batches
-- queued on that page's lock. Events arrive in time order, so a BRIN index over
-- published_at finds the old ones for the retention job just as well, at next to no cost
-- per insert.
DROP INDEX events_by_age;
CREATE INDEX events_by_age ON events USING brin (published_at) WITH (autosummarize = on);

-- The final update of an execution changed indexed columns (status in executions_running's
-- predicate, completed_at in executions_finished), so it could not be a HOT update: it added
-- an entry to every index of the table, mostly on the same hot pages the awaited creations
-- insert into. Without them, and with room left on each page, it stays on its page and
-- touches no index.
-- Retention finds finished executions through executions_history instead: an execution
-- completes after it is created, so completed_at < cutoff implies created_at < cutoff.
DROP INDEX executions_finished;
-- Crash recovery finds the executions that were running through this table instead: a row
-- is inserted with the execution's creation and deleted with its final state.
CREATE TABLE running_executions (
    tenant_id    text NOT NULL,
    execution_id uuid NOT NULL,
    PRIMARY KEY (tenant_id, execution_id)
);
INSERT INTO running_executions (tenant_id, execution_id)
    SELECT tenant_id, execution_id FROM executions WHERE status IN ('started', 'running');
DROP INDEX executions_running;
ALTER TABLE executions SET (fillfactor = 50);
