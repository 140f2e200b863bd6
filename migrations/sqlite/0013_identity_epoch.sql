-- The identity epoch: a number that every change to users, keys, sessions or
-- grants raises, in the change's own transaction. Each server keeps the
-- callers it has verified for as long as this number stays the same, and
-- reads it a few times a second to learn of changes made by other processes
-- (another instance, a `commons` command).
CREATE TABLE identity_epoch (id INTEGER PRIMARY KEY CHECK (id = 1), n BIGINT NOT NULL);
INSERT INTO identity_epoch (id, n) VALUES (1, 0);
CREATE TRIGGER users_insert_raises_identity_epoch AFTER INSERT ON users
BEGIN UPDATE identity_epoch SET n = n + 1; END;
CREATE TRIGGER users_update_raises_identity_epoch AFTER UPDATE ON users
BEGIN UPDATE identity_epoch SET n = n + 1; END;
CREATE TRIGGER users_delete_raises_identity_epoch AFTER DELETE ON users
BEGIN UPDATE identity_epoch SET n = n + 1; END;
CREATE TRIGGER api_keys_insert_raises_identity_epoch AFTER INSERT ON api_keys
BEGIN UPDATE identity_epoch SET n = n + 1; END;
CREATE TRIGGER api_keys_update_raises_identity_epoch AFTER UPDATE ON api_keys
BEGIN UPDATE identity_epoch SET n = n + 1; END;
CREATE TRIGGER api_keys_delete_raises_identity_epoch AFTER DELETE ON api_keys
BEGIN UPDATE identity_epoch SET n = n + 1; END;
CREATE TRIGGER signing_keys_insert_raises_identity_epoch AFTER INSERT ON signing_keys
BEGIN UPDATE identity_epoch SET n = n + 1; END;
CREATE TRIGGER signing_keys_update_raises_identity_epoch AFTER UPDATE ON signing_keys
BEGIN UPDATE identity_epoch SET n = n + 1; END;
CREATE TRIGGER signing_keys_delete_raises_identity_epoch AFTER DELETE ON signing_keys
BEGIN UPDATE identity_epoch SET n = n + 1; END;
CREATE TRIGGER revoked_sessions_insert_raises_identity_epoch AFTER INSERT ON revoked_sessions
BEGIN UPDATE identity_epoch SET n = n + 1; END;
CREATE TRIGGER revoked_sessions_update_raises_identity_epoch AFTER UPDATE ON revoked_sessions
BEGIN UPDATE identity_epoch SET n = n + 1; END;
CREATE TRIGGER revoked_sessions_delete_raises_identity_epoch AFTER DELETE ON revoked_sessions
BEGIN UPDATE identity_epoch SET n = n + 1; END;
CREATE TRIGGER authz_roles_insert_raises_identity_epoch AFTER INSERT ON authz_roles
BEGIN UPDATE identity_epoch SET n = n + 1; END;
CREATE TRIGGER authz_roles_update_raises_identity_epoch AFTER UPDATE ON authz_roles
BEGIN UPDATE identity_epoch SET n = n + 1; END;
CREATE TRIGGER authz_roles_delete_raises_identity_epoch AFTER DELETE ON authz_roles
BEGIN UPDATE identity_epoch SET n = n + 1; END;
CREATE TRIGGER authz_policies_insert_raises_identity_epoch AFTER INSERT ON authz_policies
BEGIN UPDATE identity_epoch SET n = n + 1; END;
CREATE TRIGGER authz_policies_update_raises_identity_epoch AFTER UPDATE ON authz_policies
BEGIN UPDATE identity_epoch SET n = n + 1; END;
CREATE TRIGGER authz_policies_delete_raises_identity_epoch AFTER DELETE ON authz_policies
BEGIN UPDATE identity_epoch SET n = n + 1; END;
CREATE TRIGGER authz_user_policies_insert_raises_identity_epoch AFTER INSERT ON authz_user_policies
BEGIN UPDATE identity_epoch SET n = n + 1; END;
CREATE TRIGGER authz_user_policies_update_raises_identity_epoch AFTER UPDATE ON authz_user_policies
BEGIN UPDATE identity_epoch SET n = n + 1; END;
CREATE TRIGGER authz_user_policies_delete_raises_identity_epoch AFTER DELETE ON authz_user_policies
BEGIN UPDATE identity_epoch SET n = n + 1; END;
CREATE TRIGGER authz_group_policies_insert_raises_identity_epoch AFTER INSERT ON authz_group_policies
BEGIN UPDATE identity_epoch SET n = n + 1; END;
CREATE TRIGGER authz_group_policies_update_raises_identity_epoch AFTER UPDATE ON authz_group_policies
BEGIN UPDATE identity_epoch SET n = n + 1; END;
CREATE TRIGGER authz_group_policies_delete_raises_identity_epoch AFTER DELETE ON authz_group_policies
BEGIN UPDATE identity_epoch SET n = n + 1; END;
CREATE TRIGGER authz_group_users_insert_raises_identity_epoch AFTER INSERT ON authz_group_users
BEGIN UPDATE identity_epoch SET n = n + 1; END;
CREATE TRIGGER authz_group_users_update_raises_identity_epoch AFTER UPDATE ON authz_group_users
BEGIN UPDATE identity_epoch SET n = n + 1; END;
CREATE TRIGGER authz_group_users_delete_raises_identity_epoch AFTER DELETE ON authz_group_users
BEGIN UPDATE identity_epoch SET n = n + 1; END;
