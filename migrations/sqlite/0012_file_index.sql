-- The file index (indexd, FILES.md §1.2): one row per record, in the same
-- database as the graph so a data-file node and its record commit together.
-- Lists (hashes, urls, acl, authz, metadata) are kept as JSON text on the
-- record; the values a record is looked up by are also rows of
-- index_terms, so a lookup by hash, url, acl or authz is an index seek.
-- The term and alias tables are WITHOUT ROWID: a row is one entry of its
-- primary key's B-tree instead of a table row plus a key entry.
CREATE TABLE index_records (
    did TEXT PRIMARY KEY,
    baseid TEXT NOT NULL,
    rev TEXT NOT NULL,
    form TEXT,
    size BIGINT,
    file_name TEXT,
    version TEXT,
    uploader TEXT,
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
-- (value: key, U+001F, value). The triggers below keep a record's terms: a
-- write of a record is one statement. No index by did: a record's terms are
-- deleted by their keys, and an import would pay for it on every term.
CREATE TABLE index_terms (
    kind TEXT NOT NULL,
    value TEXT NOT NULL,
    did TEXT NOT NULL,
    PRIMARY KEY (kind, value, did)
) WITHOUT ROWID;

CREATE TRIGGER index_terms_of_inserted AFTER INSERT ON index_records BEGIN
    INSERT OR IGNORE INTO index_terms (kind, value, did)
    SELECT kind, value, NEW.did FROM (
        SELECT 'hash:' || key AS kind, value FROM json_each(NEW.hashes)
        UNION ALL SELECT 'url', value FROM json_each(NEW.urls)
        UNION ALL SELECT 'acl', value FROM json_each(NEW.acl)
        UNION ALL SELECT 'authz', value FROM json_each(NEW.authz)
        UNION ALL SELECT 'metadata', key || char(31) || value FROM json_each(NEW.metadata)
    );
END;
CREATE TRIGGER index_terms_of_deleted AFTER DELETE ON index_records BEGIN
    DELETE FROM index_terms WHERE did = OLD.did AND (kind, value) IN (
        SELECT 'hash:' || key AS kind, value FROM json_each(OLD.hashes)
        UNION ALL SELECT 'url', value FROM json_each(OLD.urls)
        UNION ALL SELECT 'acl', value FROM json_each(OLD.acl)
        UNION ALL SELECT 'authz', value FROM json_each(OLD.authz)
        UNION ALL SELECT 'metadata', key || char(31) || value FROM json_each(OLD.metadata)
    );
END;
CREATE TRIGGER index_terms_of_updated AFTER UPDATE ON index_records BEGIN
    DELETE FROM index_terms WHERE did = OLD.did AND (kind, value) IN (
        SELECT 'hash:' || key AS kind, value FROM json_each(OLD.hashes)
        UNION ALL SELECT 'url', value FROM json_each(OLD.urls)
        UNION ALL SELECT 'acl', value FROM json_each(OLD.acl)
        UNION ALL SELECT 'authz', value FROM json_each(OLD.authz)
        UNION ALL SELECT 'metadata', key || char(31) || value FROM json_each(OLD.metadata)
    );
    INSERT OR IGNORE INTO index_terms (kind, value, did)
    SELECT kind, value, NEW.did FROM (
        SELECT 'hash:' || key AS kind, value FROM json_each(NEW.hashes)
        UNION ALL SELECT 'url', value FROM json_each(NEW.urls)
        UNION ALL SELECT 'acl', value FROM json_each(NEW.acl)
        UNION ALL SELECT 'authz', value FROM json_each(NEW.authz)
        UNION ALL SELECT 'metadata', key || char(31) || value FROM json_each(NEW.metadata)
    );
END;

CREATE TABLE index_aliases (
    alias TEXT PRIMARY KEY,
    did TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX index_aliases_by_did ON index_aliases (did);
