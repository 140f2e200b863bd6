-- Ids, types, links and keys compare as bytes (COLLATE "C"), as in SQLite,
-- whatever the database's default collation. Under a locale (even C.UTF-8)
-- every index comparison of these keys went through strcoll: about a tenth
-- of PostgreSQL's time in a large upload, and of a nested GraphQL list. Only
-- equality and the order of ids and project ids depend on it; the order is
-- now the same on both backends.
ALTER TABLE nodes
    ALTER COLUMN node_id TYPE TEXT COLLATE "C",
    ALTER COLUMN node_type TYPE TEXT COLLATE "C",
    ALTER COLUMN project_id TYPE TEXT COLLATE "C",
    ALTER COLUMN natural_key TYPE TEXT COLLATE "C";
ALTER TABLE edges
    ALTER COLUMN src_id TYPE TEXT COLLATE "C",
    ALTER COLUMN link TYPE TEXT COLLATE "C",
    ALTER COLUMN dst_id TYPE TEXT COLLATE "C",
    ALTER COLUMN project_id TYPE TEXT COLLATE "C";
