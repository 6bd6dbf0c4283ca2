-- Subscriber ids are never handed out twice, and tokens are bound to the row.
--
-- Without AUTOINCREMENT, SQLite gives a new row the highest id plus one, so
-- after the newest subscriber was forgotten the next one got the same id,
-- and every token naming that id worked on the new person. The table is
-- rebuilt with AUTOINCREMENT (SQLite cannot add it in place), keeping every
-- row and its id.
--
-- token_salt: a random value bound into the tokens made for the row, which
-- only act while the row still holds it. legacy_tokens: the row existed
-- before bindings; tokens already in its subscriber's inbox (which name only
-- the id) keep working for it, and for no row made later.
-- confirm_nonce / signup_requested_at: the signup a confirmation link
-- confirms, cleared when it is used, so a link confirms once.
--
-- Run with foreign keys off (the runner does it): dropping the old table
-- with them on would set every delivery's subscriber to NULL.

CREATE TABLE subscribers_new (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    email               TEXT    NOT NULL,
    email_key           TEXT    NOT NULL UNIQUE,
    name                TEXT,
    status              TEXT    NOT NULL CHECK (status IN ('pending','active','unsubscribed','bounced','complained')),
    tags                TEXT    NOT NULL DEFAULT '[]',
    attributes          TEXT    NOT NULL DEFAULT '{}',
    source              TEXT    NOT NULL DEFAULT '',
    created_at          INTEGER NOT NULL,
    updated_at          INTEGER NOT NULL,
    confirmed_at        INTEGER,
    unsubscribed_at     INTEGER,
    unsubscribe_source  TEXT,
    soft_bounces        INTEGER NOT NULL DEFAULT 0,
    token_salt          INTEGER NOT NULL DEFAULT (random()),
    legacy_tokens       INTEGER NOT NULL DEFAULT 0,
    confirm_nonce       INTEGER,
    signup_requested_at INTEGER
);

INSERT INTO subscribers_new (
    id, email, email_key, name, status, tags, attributes, source, created_at, updated_at,
    confirmed_at, unsubscribed_at, unsubscribe_source, soft_bounces, token_salt, legacy_tokens
)
SELECT id, email, email_key, name, status, tags, attributes, source, created_at, updated_at,
       confirmed_at, unsubscribed_at, unsubscribe_source, soft_bounces, random(), 1
FROM subscribers;

DROP TABLE subscribers;
ALTER TABLE subscribers_new RENAME TO subscribers;

-- When each confirmation mail of a signup was queued: the per-address limit.
CREATE TABLE confirmation_sends (
    subscriber_id INTEGER NOT NULL REFERENCES subscribers (id) ON DELETE CASCADE,
    sent_at       INTEGER NOT NULL
);
CREATE INDEX confirmation_sends_subscriber ON confirmation_sends (subscriber_id, sent_at);

-- Webhook requests already acted on (their signature), kept while a replay
-- would still pass the timestamp check.
CREATE TABLE seen_webhooks (
    key     TEXT    PRIMARY KEY,
    seen_at INTEGER NOT NULL
);
