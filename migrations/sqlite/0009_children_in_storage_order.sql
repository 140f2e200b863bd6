-- A parent's children of one link come out of edges_by_dst in their `seq`
-- order, so a page of them (`samples(first: 10)`, ordered by `seq`) reads its
-- rows and stops; keyed by `src_id` first, the first 10 of a study's 10,000
-- subjects were found by reading and sorting all 10,000. `src_id` follows,
-- so the index still covers lookups that need only the edge.
DROP INDEX edges_by_dst;
CREATE INDEX edges_by_dst ON edges (dst_id, link, src_seq, src_id);
