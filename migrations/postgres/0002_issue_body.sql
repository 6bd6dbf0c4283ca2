-- The composed issue (bodies with per-recipient markers), so that any worker
-- sharing the database can send it without the content tree.
ALTER TABLE issues ADD COLUMN body TEXT;
