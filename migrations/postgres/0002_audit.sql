-- Audit trail: the ids of the entities each transaction touched (a JSON array).
ALTER TABLE transactions ADD COLUMN entity_ids TEXT NOT NULL DEFAULT '[]';
CREATE INDEX transactions_by_project ON transactions (project_id, id);
