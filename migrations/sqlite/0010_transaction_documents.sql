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
   SET program = substr(project_id, 1, instr(project_id, '-') - 1),
       project = substr(project_id, instr(project_id, '-') + 1)
 WHERE instr(project_id, '-') > 0;
