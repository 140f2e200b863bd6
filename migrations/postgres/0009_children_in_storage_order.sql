-- A parent's children of one link come out of edges_by_dst in their `seq`
-- order, so a page of them (`samples(first: 10)`, ordered by `seq`) reads its
-- rows and stops; keyed by `src_id`, the first 10 of a study's 10,000 subjects
-- were found by reading and sorting all 10,000. `src_id` stays in the index
-- for lookups that need only the edge (see migrations/sqlite).
DROP INDEX edges_by_dst;
CREATE INDEX edges_by_dst ON edges (dst_id, link, src_seq) INCLUDE (src_id);
