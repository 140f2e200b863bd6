-- Ending a user's sessions (a new password, `commons users end-sessions`):
-- session tokens issued before this time (Unix seconds) are refused.
ALTER TABLE users ADD COLUMN sessions_after BIGINT NOT NULL DEFAULT 0;
