-- The identity epoch: a number that every change to users, keys, sessions or
-- grants raises, in the change's own transaction. Each server keeps the
-- callers it has verified for as long as this number stays the same, and
-- reads it a few times a second to learn of changes made by other processes
-- (another instance, a `commons` command).
CREATE TABLE identity_epoch (id INTEGER PRIMARY KEY CHECK (id = 1), n BIGINT NOT NULL);
INSERT INTO identity_epoch (id, n) VALUES (1, 0);
CREATE FUNCTION raise_identity_epoch() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE identity_epoch SET n = n + 1;
    RETURN NULL;
END $$;
CREATE TRIGGER users_raises_identity_epoch AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON users
    FOR EACH STATEMENT EXECUTE FUNCTION raise_identity_epoch();
CREATE TRIGGER api_keys_raises_identity_epoch AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON api_keys
    FOR EACH STATEMENT EXECUTE FUNCTION raise_identity_epoch();
CREATE TRIGGER signing_keys_raises_identity_epoch AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON signing_keys
    FOR EACH STATEMENT EXECUTE FUNCTION raise_identity_epoch();
CREATE TRIGGER revoked_sessions_raises_identity_epoch AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON revoked_sessions
    FOR EACH STATEMENT EXECUTE FUNCTION raise_identity_epoch();
CREATE TRIGGER authz_roles_raises_identity_epoch AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON authz_roles
    FOR EACH STATEMENT EXECUTE FUNCTION raise_identity_epoch();
CREATE TRIGGER authz_policies_raises_identity_epoch AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON authz_policies
    FOR EACH STATEMENT EXECUTE FUNCTION raise_identity_epoch();
CREATE TRIGGER authz_user_policies_raises_identity_epoch AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON authz_user_policies
    FOR EACH STATEMENT EXECUTE FUNCTION raise_identity_epoch();
CREATE TRIGGER authz_group_policies_raises_identity_epoch AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON authz_group_policies
    FOR EACH STATEMENT EXECUTE FUNCTION raise_identity_epoch();
CREATE TRIGGER authz_group_users_raises_identity_epoch AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON authz_group_users
    FOR EACH STATEMENT EXECUTE FUNCTION raise_identity_epoch();
