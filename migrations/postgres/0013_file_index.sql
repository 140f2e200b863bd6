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
-- (value: key, U+001F, value). The triggers below keep a record's terms: a
-- write of a record is one statement. No index by did: a record's terms are
-- deleted by their keys, and an import would pay for it on every term.
CREATE TABLE index_terms (
    kind TEXT COLLATE "C" NOT NULL,
    value TEXT COLLATE "C" NOT NULL,
    did TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (kind, value, did)
);

-- The terms of a record's lists (the same as SQLite's triggers make).
CREATE FUNCTION index_terms_of(hashes TEXT, urls TEXT, acl TEXT, authz TEXT, metadata TEXT)
RETURNS TABLE (kind TEXT, value TEXT) LANGUAGE sql IMMUTABLE AS $$
    SELECT 'hash:' || key, value FROM jsonb_each_text(hashes::jsonb)
    UNION SELECT 'url', v FROM jsonb_array_elements_text(urls::jsonb) AS v
    UNION SELECT 'acl', v FROM jsonb_array_elements_text(acl::jsonb) AS v
    UNION SELECT 'authz', v FROM jsonb_array_elements_text(authz::jsonb) AS v
    UNION SELECT 'metadata', key || chr(31) || value FROM jsonb_each_text(metadata::jsonb)
$$;

-- Once per statement, over all the rows it wrote (transition tables).
CREATE FUNCTION index_terms_after_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO index_terms (kind, value, did)
    SELECT t.kind, t.value, r.did
    FROM inserted r, index_terms_of(r.hashes, r.urls, r.acl, r.authz, r.metadata) t;
    RETURN NULL;
END $$;
CREATE FUNCTION index_terms_after_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM index_terms x
    USING deleted r, index_terms_of(r.hashes, r.urls, r.acl, r.authz, r.metadata) t
    WHERE x.kind = t.kind AND x.value = t.value AND x.did = r.did;
    RETURN NULL;
END $$;
CREATE FUNCTION index_terms_after_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM index_terms x
    USING before r, index_terms_of(r.hashes, r.urls, r.acl, r.authz, r.metadata) t
    WHERE x.kind = t.kind AND x.value = t.value AND x.did = r.did;
    INSERT INTO index_terms (kind, value, did)
    SELECT t.kind, t.value, r.did
    FROM after r, index_terms_of(r.hashes, r.urls, r.acl, r.authz, r.metadata) t;
    RETURN NULL;
END $$;
CREATE TRIGGER index_terms_of_inserted AFTER INSERT ON index_records
    REFERENCING NEW TABLE AS inserted
    FOR EACH STATEMENT EXECUTE FUNCTION index_terms_after_insert();
CREATE TRIGGER index_terms_of_deleted AFTER DELETE ON index_records
    REFERENCING OLD TABLE AS deleted
    FOR EACH STATEMENT EXECUTE FUNCTION index_terms_after_delete();
CREATE TRIGGER index_terms_of_updated AFTER UPDATE ON index_records
    REFERENCING OLD TABLE AS before NEW TABLE AS after
    FOR EACH STATEMENT EXECUTE FUNCTION index_terms_after_update();

CREATE TABLE index_aliases (
    alias TEXT COLLATE "C" PRIMARY KEY,
    did TEXT COLLATE "C" NOT NULL
);
CREATE INDEX index_aliases_by_did ON index_aliases (did);
