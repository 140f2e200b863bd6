-- Browser sessions: tokens ended by logout before their expiry, and one-time
-- login links (stored as SHA-256 hashes, deleted when used).
CREATE TABLE revoked_sessions (
    jti TEXT PRIMARY KEY,
    exp INTEGER NOT NULL
);
CREATE TABLE login_links (
    token_hash TEXT PRIMARY KEY,
    user_id    INTEGER NOT NULL REFERENCES users (id),
    exp        INTEGER NOT NULL
);
