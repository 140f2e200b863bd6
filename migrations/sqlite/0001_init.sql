-- Layout: one generic table of nodes (any dictionary, no DDL per node type)
-- and one of edges; identity and authorization tables beside them.

CREATE TABLE nodes (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    node_id     TEXT NOT NULL UNIQUE,
    node_type   TEXT NOT NULL,
    project_id  TEXT,
    -- lower-cased natural key (e.g. project_id + submitter_id); NULL when the type has none
    natural_key TEXT,
    props       TEXT NOT NULL
);
CREATE UNIQUE INDEX nodes_natural_key ON nodes (node_type, natural_key) WHERE natural_key IS NOT NULL;
CREATE INDEX nodes_by_type_project ON nodes (node_type, project_id, seq);
CREATE INDEX nodes_by_project ON nodes (project_id);

CREATE TABLE edges (
    src_id     TEXT NOT NULL,
    link       TEXT NOT NULL,
    dst_id     TEXT NOT NULL,
    project_id TEXT,
    PRIMARY KEY (src_id, link, dst_id)
) WITHOUT ROWID;
CREATE INDEX edges_by_dst ON edges (dst_id, link, src_id);

CREATE TABLE transactions (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    project_id       TEXT,
    role             TEXT NOT NULL,
    is_dry_run       INTEGER NOT NULL,
    state            TEXT NOT NULL,
    submitter        TEXT,
    created_datetime TEXT NOT NULL,
    entity_count     INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE users (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    username      TEXT NOT NULL UNIQUE COLLATE NOCASE,
    password_hash TEXT,
    is_admin      INTEGER NOT NULL DEFAULT 0,
    active        INTEGER NOT NULL DEFAULT 1,
    created       INTEGER NOT NULL
);

CREATE TABLE api_keys (
    jti     TEXT PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES users (id),
    exp     INTEGER NOT NULL,
    revoked INTEGER NOT NULL DEFAULT 0,
    created INTEGER NOT NULL
);

CREATE TABLE signing_keys (
    kid         TEXT PRIMARY KEY,
    private_der BLOB NOT NULL,
    created     INTEGER NOT NULL,
    -- the newest active key signs; older ones still verify until retired
    retired     INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE authz_resources (path TEXT PRIMARY KEY);
CREATE TABLE authz_roles (id TEXT PRIMARY KEY, permissions TEXT NOT NULL);
CREATE TABLE authz_policies (
    id             TEXT PRIMARY KEY,
    role_ids       TEXT NOT NULL,
    resource_paths TEXT NOT NULL
);
-- Grants to users (by lower-cased name) and to groups (anonymous, logged-in, ...).
CREATE TABLE authz_user_policies (
    username  TEXT NOT NULL COLLATE NOCASE,
    policy_id TEXT NOT NULL,
    PRIMARY KEY (username, policy_id)
);
CREATE TABLE authz_group_policies (
    group_name TEXT NOT NULL,
    policy_id  TEXT NOT NULL,
    PRIMARY KEY (group_name, policy_id)
);
CREATE TABLE authz_group_users (
    group_name TEXT NOT NULL,
    username   TEXT NOT NULL COLLATE NOCASE,
    PRIMARY KEY (group_name, username)
);

-- Server-wide settings shared by every instance and CLI command (e.g. public_url).
CREATE TABLE settings (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
