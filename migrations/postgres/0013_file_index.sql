-- The file index (indexd, FILES.md §1.2): one row per record, in the same
-- database as the graph so a data-file node and its record commit together.
-- Lists (hashes, urls, acl, authz, metadata) are kept as JSON text on the
-- record; the values a record is looked up by are also rows of
-- index_terms, so a lookup by hash, url, acl or authz is an index seek.
CREATE TABLE index_records (
    did TEXT COLLATE "C" PRIMARY KEY,
    baseid TEXT COLLATE "C" NOT NULL,
    rev TEXT NOT NULL,
    form TEXT,
    size BIGINT,
    file_name TEXT COLLATE "C",
    version TEXT,
    uploader TEXT COLLATE "C",
    description TEXT,
    hashes TEXT NOT NULL,
    urls TEXT NOT NULL,
    acl TEXT NOT NULL,
    authz TEXT NOT NULL,
    metadata TEXT NOT NULL,
    urls_metadata TEXT NOT NULL,
    created_date TEXT NOT NULL,
    updated_date TEXT NOT NULL,
    content_created_date TEXT,
    content_updated_date TEXT
);
CREATE INDEX index_records_by_baseid ON index_records (baseid, created_date);
CREATE INDEX index_records_by_uploader ON index_records (uploader, did) WHERE uploader IS NOT NULL;
CREATE INDEX index_records_by_file_name ON index_records (file_name, did);
CREATE INDEX index_records_by_update ON index_records (updated_date, did);

-- kind: 'hash:<type>' (md5, sha256...), 'url', 'acl', 'authz', 'metadata'
-- (value: the JSON text of [key, value]). No index by did: a record's terms
-- are deleted by their keys, and an import would pay for it on every term.
CREATE TABLE index_terms (
    kind TEXT COLLATE "C" NOT NULL,
    value TEXT COLLATE "C" NOT NULL,
    did TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (kind, value, did)
);

CREATE TABLE index_aliases (
    alias TEXT COLLATE "C" PRIMARY KEY,
    did TEXT COLLATE "C" NOT NULL
);
CREATE INDEX index_aliases_by_did ON index_aliases (did);
