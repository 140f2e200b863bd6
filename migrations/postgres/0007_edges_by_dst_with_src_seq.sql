-- A node's children are found through edges_by_dst; with each child's `seq`
-- included, a GraphQL list can read it from the index (an index-only scan)
-- and fetch the child through nodes_by_seq (see migrations/sqlite).
DROP INDEX edges_by_dst;
CREATE INDEX edges_by_dst ON edges (dst_id, link, src_id) INCLUDE (src_seq);
