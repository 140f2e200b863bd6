-- Sheepdog's transaction documents, one per logged request: the program and
-- project by name (for `transaction_log(program:, project:)`), the request
-- body (its text when small) and the reply.
ALTER TABLE transactions ADD COLUMN program TEXT;
ALTER TABLE transactions ADD COLUMN project TEXT;
ALTER TABLE transactions ADD COLUMN doc_format TEXT;
ALTER TABLE transactions ADD COLUMN doc TEXT;
ALTER TABLE transactions ADD COLUMN doc_size BIGINT;
ALTER TABLE transactions ADD COLUMN response_json TEXT;
UPDATE transactions
   SET program = substr(project_id, 1, strpos(project_id, '-') - 1),
       project = substr(project_id, strpos(project_id, '-') + 1)
 WHERE strpos(project_id, '-') > 0;
