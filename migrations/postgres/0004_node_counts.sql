-- Node counts per project and type, so a count needs no scan of the nodes.
-- Writers only append signed deltas (a new node +1, a deleted one -1) and fold
-- their projects' rows into one per type as they commit; a count is the sum of
-- a few rows. Appending never waits on another writer's row.
CREATE TABLE node_counts (
    -- a key of its own, so that its rows can be replicated (REPLICA IDENTITY)
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    project_id TEXT,
    node_type  TEXT NOT NULL,
    delta      BIGINT NOT NULL
);
CREATE INDEX node_counts_by_project ON node_counts (project_id, node_type);
INSERT INTO node_counts (project_id, node_type, delta)
SELECT project_id, node_type, count(*) FROM nodes GROUP BY project_id, node_type;
