-- Kailash Gateway schema, version 8: node runs folded into their execution's final update.
-- A batch that holds an execution's final state and its node runs (the writer gathers a
-- batch for a few milliseconds, so nearly always) writes those runs into this column, as a
-- JSON array, with the final state: two inserts, primary-key entries and fencing lookups
-- less per execution, and the runs are kept under the same fencing token as the final state
-- they come with. Runs that arrive in another batch go to `node_runs` as before; readers
-- read both. `json`, not `jsonb`: it is only validated on the way in, and read rarely.
ALTER TABLE executions ADD COLUMN node_runs json;
-- The final update now also brings the runs: keep more of each page free, so that the new
-- version still fits beside the old one (a HOT update, no index touched); at half free,
-- about 40 % of final updates no longer fit and added an entry to every index.
ALTER TABLE executions SET (fillfactor = 30);
