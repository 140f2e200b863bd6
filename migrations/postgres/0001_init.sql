-- The same layout as migrations/sqlite: a generic node table (props JSONB),
-- an edge table, transaction logs, identity and authorization tables.

CREATE TABLE nodes (
    seq         BIGINT GENERATED ALWAYS AS IDENTITY,
    node_id     TEXT PRIMARY KEY,
    node_type   TEXT NOT NULL,
    project_id  TEXT,
    natural_key TEXT,
    props       JSONB NOT NULL
);
CREATE UNIQUE INDEX nodes_natural_key ON nodes (node_type, natural_key) WHERE natural_key IS NOT NULL;
CREATE INDEX nodes_by_type_project ON nodes (node_type, project_id, seq);
CREATE INDEX nodes_by_project ON nodes (project_id);
CREATE UNIQUE INDEX nodes_by_seq ON nodes (seq);

CREATE TABLE edges (
    src_id     TEXT NOT NULL,
    link       TEXT NOT NULL,
    dst_id     TEXT NOT NULL,
    project_id TEXT,
    PRIMARY KEY (src_id, link, dst_id)
);
CREATE INDEX edges_by_dst ON edges (dst_id, link, src_id);

CREATE TABLE transactions (
    id               BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    project_id       TEXT,
    role             TEXT NOT NULL,
    is_dry_run       BOOLEAN NOT NULL,
    state            TEXT NOT NULL,
    submitter        TEXT,
    created_datetime TEXT NOT NULL,
    entity_count     BIGINT NOT NULL DEFAULT 0
);

CREATE TABLE users (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    username      TEXT NOT NULL,
    password_hash TEXT,
    is_admin      BOOLEAN NOT NULL DEFAULT FALSE,
    active        BOOLEAN NOT NULL DEFAULT TRUE,
    created       BIGINT NOT NULL
);
CREATE UNIQUE INDEX users_by_name ON users (lower(username));

CREATE TABLE api_keys (
    jti     TEXT PRIMARY KEY,
    user_id BIGINT NOT NULL REFERENCES users (id),
    exp     BIGINT NOT NULL,
    revoked BOOLEAN NOT NULL DEFAULT FALSE,
    created BIGINT NOT NULL
);

CREATE TABLE signing_keys (
    kid         TEXT PRIMARY KEY,
    private_der BYTEA NOT NULL,
    created     BIGINT NOT NULL,
    retired     BOOLEAN NOT NULL DEFAULT FALSE
);

CREATE TABLE authz_resources (path TEXT PRIMARY KEY);
CREATE TABLE authz_roles (id TEXT PRIMARY KEY, permissions TEXT NOT NULL);
CREATE TABLE authz_policies (
    id             TEXT PRIMARY KEY,
    role_ids       TEXT NOT NULL,
    resource_paths TEXT NOT NULL
);
CREATE TABLE authz_user_policies (
    username  TEXT NOT NULL,
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
    username   TEXT NOT NULL,
    PRIMARY KEY (group_name, username)
);

CREATE TABLE settings (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
