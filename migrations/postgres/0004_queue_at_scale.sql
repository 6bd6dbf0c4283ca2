-- Enqueueing an issue inserts one delivery per active subscriber in one
-- statement. At a million subscribers the foreign keys of `deliveries` cost
-- most of that statement: each inserted row ran two referential checks (a
-- query and a row lock on the subscriber, which rewrites every subscriber
-- row's header), and each recorded attempt a third. The invariants they
-- kept are kept by the statements instead (crates/store):
--
-- * issues and deliveries are never deleted, so nothing can cascade;
-- * a delivery's issue is the row its enqueue statement just wrote or read;
-- * forgetting a subscriber sets its deliveries' subscriber_id to NULL in the
--   same transaction that deletes the row (what ON DELETE SET NULL did), and
--   takes an advisory lock that every enqueue holds shared, so no enqueue
--   running meanwhile can queue the row being deleted;
-- * an attempt is recorded only for a delivery that exists (the INSERT's
--   WHERE EXISTS).
ALTER TABLE delivery_attempts DROP CONSTRAINT delivery_attempts_delivery_id_fkey;
ALTER TABLE deliveries DROP CONSTRAINT deliveries_issue_id_fkey;
ALTER TABLE deliveries DROP CONSTRAINT deliveries_subscriber_id_fkey;

-- One delivery per issue and subscriber, issue first: a new issue's rows
-- then append to the index in subscriber order instead of being spread
-- between every earlier issue's, and the same index serves the per-issue
-- counts, so deliveries_issue_status (one more index entry per insert and
-- per status change) goes. Forget finds a subscriber's deliveries through
-- it issue by issue.
ALTER TABLE deliveries ADD CONSTRAINT deliveries_issue_subscriber UNIQUE (issue_id, subscriber_id);
ALTER TABLE deliveries DROP CONSTRAINT deliveries_subscriber_id_issue_id_key;
DROP INDEX deliveries_issue_status;
