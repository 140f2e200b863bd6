-- Lists of one type across projects in storage order (`case(first: 10)`,
-- offset paging, a type-wide export) walk this index instead of sorting every
-- node of the type: `sample(first: 100)` over a million samples took 72 ms.
CREATE INDEX nodes_by_type ON nodes (node_type, seq);
