-- Tokens are bound to the subscriber's row (ids come from an identity
-- sequence here and are never handed out twice already).
--
-- token_salt: a random value bound into the tokens made for the row, which
-- only act while the row still holds it. legacy_tokens: the row existed
-- before bindings; tokens already in its subscriber's inbox (which name only
-- the id) keep working for it, and for no row made later.
-- confirm_nonce / signup_requested_at: the signup a confirmation link
-- confirms, cleared when it is used, so a link confirms once.

ALTER TABLE subscribers
    ADD COLUMN token_salt BIGINT NOT NULL DEFAULT (floor(random() * 9.2e18))::bigint,
    ADD COLUMN legacy_tokens BOOLEAN NOT NULL DEFAULT FALSE,
    ADD COLUMN confirm_nonce BIGINT,
    ADD COLUMN signup_requested_at BIGINT;
UPDATE subscribers SET legacy_tokens = TRUE;

-- When each confirmation mail of a signup was queued: the per-address limit.
CREATE TABLE confirmation_sends (
    subscriber_id BIGINT NOT NULL REFERENCES subscribers (id) ON DELETE CASCADE,
    sent_at       BIGINT NOT NULL
);
CREATE INDEX confirmation_sends_subscriber ON confirmation_sends (subscriber_id, sent_at);

-- Webhook requests already acted on (their signature), kept while a replay
-- would still pass the timestamp check.
CREATE TABLE seen_webhooks (
    key     TEXT   PRIMARY KEY,
    seen_at BIGINT NOT NULL
);
