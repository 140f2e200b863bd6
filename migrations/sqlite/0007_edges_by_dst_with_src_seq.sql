-- A node's children are found through edges_by_dst. Carrying each child's
-- `seq` in that index lets a GraphQL list fetch the child by its integer key;
-- before, the join went from the index entry to the edge row and then through
-- the text-keyed node_id index: two more seeks by UUID per child. The key
-- order is unchanged (src_seq only follows src_id).
DROP INDEX edges_by_dst;
CREATE INDEX edges_by_dst ON edges (dst_id, link, src_id, src_seq);
