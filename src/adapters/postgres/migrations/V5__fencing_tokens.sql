-- Kailash Gateway schema, version 5: fencing tokens. Each execution keeps the token of the
-- lease its run holds; node runs and the final state are written only under that token, and
-- the node that fails a lost node's run raises it, so the lost node's late writes (it was
-- only cut off, or paused) change nothing. The defaults make the change instant (no table
-- rewrite), and 0 is the token of every run on a single node.
ALTER TABLE executions ADD COLUMN fence bigint NOT NULL DEFAULT 0;
ALTER TABLE node_runs ADD COLUMN fence bigint NOT NULL DEFAULT 0;
