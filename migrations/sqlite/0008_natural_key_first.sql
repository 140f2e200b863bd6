-- The same key order as migrations/postgres, where it keeps a planner with
-- stale statistics from walking a whole type per key: a natural-key lookup
-- names the keys alone, which only an index led by the key serves.
DROP INDEX nodes_natural_key;
CREATE UNIQUE INDEX nodes_natural_key ON nodes (natural_key, node_type) WHERE natural_key IS NOT NULL;
