-- Each edge also carries its source node's `seq`, indexed: an export walks a
-- type's nodes in `seq` order, and finding their edges through this index reads
-- neighbouring pages, where finding them by the random UUIDs of `src_id` read
-- a page from anywhere in the table for every node (a third of an export).
ALTER TABLE edges ADD COLUMN src_seq INTEGER;
UPDATE edges SET src_seq = (SELECT seq FROM nodes WHERE nodes.node_id = edges.src_id);
CREATE INDEX edges_by_src_seq ON edges (src_seq, link, dst_id);
