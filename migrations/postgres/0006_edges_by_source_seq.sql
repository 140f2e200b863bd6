-- Each edge also carries its source node's `seq`, indexed: an export walks a
-- type's nodes in `seq` order, and finding their edges through this index reads
-- neighbouring pages rather than one anywhere in the table per node (see
-- migrations/sqlite).
ALTER TABLE edges ADD COLUMN src_seq BIGINT;
UPDATE edges SET src_seq = nodes.seq FROM nodes WHERE nodes.node_id = edges.src_id;
ALTER TABLE edges ALTER COLUMN src_seq SET NOT NULL;
CREATE INDEX edges_by_src_seq ON edges (src_seq, link, dst_id);
