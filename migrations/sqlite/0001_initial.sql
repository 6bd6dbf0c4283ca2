-- letterpress store, SQLite flavour. Every time is INTEGER unix milliseconds (UTC),
-- the same as in the PostgreSQL schema, so both backends share one decoding path
-- and queue comparisons (next_attempt_at, lease_until) are plain integer compares.

CREATE TABLE subscribers (
    id                 INTEGER PRIMARY KEY,
    email              TEXT    NOT NULL,              -- as given
    email_key          TEXT    NOT NULL UNIQUE,       -- lower-cased: uniqueness key
    name               TEXT,
    status             TEXT    NOT NULL CHECK (status IN ('pending','active','unsubscribed','bounced','complained')),
    tags               TEXT    NOT NULL DEFAULT '[]', -- JSON array of strings
    attributes         TEXT    NOT NULL DEFAULT '{}', -- JSON object
    source             TEXT    NOT NULL DEFAULT '',
    created_at         INTEGER NOT NULL,
    updated_at         INTEGER NOT NULL,
    confirmed_at       INTEGER,
    unsubscribed_at    INTEGER,
    unsubscribe_source TEXT,
    soft_bounces       INTEGER NOT NULL DEFAULT 0
);

-- Forgotten addresses: HMAC-SHA256(key, lower-case address), hex. No personal data.
CREATE TABLE suppressed_hashes (
    hash       TEXT    PRIMARY KEY,
    reason     TEXT    NOT NULL,
    created_at INTEGER NOT NULL
);

CREATE TABLE issues (
    id           INTEGER PRIMARY KEY,
    slug         TEXT    NOT NULL UNIQUE,
    content_hash TEXT    NOT NULL,
    subject      TEXT    NOT NULL,
    created_at   INTEGER NOT NULL
);

CREATE TABLE deliveries (
    id              INTEGER PRIMARY KEY,
    issue_id        INTEGER NOT NULL REFERENCES issues (id) ON DELETE CASCADE,
    -- SET NULL: a forgotten subscriber's row is deleted, the delivery history stays.
    subscriber_id   INTEGER REFERENCES subscribers (id) ON DELETE SET NULL,
    status          TEXT    NOT NULL CHECK (status IN ('queued','deferred','sent','failed','skipped')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    lease_owner     TEXT,
    lease_until     INTEGER,
    last_reply      TEXT,
    message_id      TEXT,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    sent_at         INTEGER,
    -- One delivery per issue and subscriber (enqueue_audience's ON CONFLICT
    -- target). Subscriber first, so the same index finds a subscriber's
    -- deliveries for forget without a third index to maintain per row.
    UNIQUE (subscriber_id, issue_id)
);
-- claim_due and next_due_at: only unsettled rows, in the order they are claimed.
CREATE INDEX deliveries_due ON deliveries (next_attempt_at, id) WHERE status IN ('queued','deferred');
-- issue_counts, retry_failed, settle_expired.
CREATE INDEX deliveries_issue_status ON deliveries (issue_id, status);

CREATE TABLE delivery_attempts (
    id           INTEGER PRIMARY KEY,
    delivery_id  INTEGER NOT NULL REFERENCES deliveries (id) ON DELETE CASCADE,
    attempted_at INTEGER NOT NULL,
    reply        TEXT    NOT NULL,
    outcome      TEXT    NOT NULL
);
CREATE INDEX delivery_attempts_delivery ON delivery_attempts (delivery_id);
