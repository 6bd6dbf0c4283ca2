-- Bounces and complaints reported after a relay accepted the message: every
-- report is kept, once (UNIQUE (source, event_id): a provider's retry or a
-- re-read bounce mailbox changes nothing), with the delivery it was traced
-- to, or only the subscriber, or neither (a report about mail we did not
-- send is still kept, so it is not processed again).
CREATE TABLE bounce_events (
    id            INTEGER PRIMARY KEY,
    source        TEXT    NOT NULL,  -- ses, postmark, mailgun, sendgrid, resend, dsn, arf, webhook
    event_id      TEXT    NOT NULL,  -- the provider's id, or a hash of the report
    delivery_id   INTEGER REFERENCES deliveries (id) ON DELETE SET NULL,
    subscriber_id INTEGER REFERENCES subscribers (id) ON DELETE SET NULL,
    kind          TEXT    NOT NULL CHECK (kind IN ('hard','soft','complaint','unsubscribe')),
    reason        TEXT,              -- at most 1000 characters; blanked when the subscriber is forgotten
    status        TEXT,              -- "5.1.1" or the provider's code
    occurred_at   INTEGER NOT NULL,
    received_at   INTEGER NOT NULL,
    UNIQUE (source, event_id)
);
CREATE INDEX bounce_events_delivery ON bounce_events (delivery_id);
CREATE INDEX bounce_events_subscriber ON bounce_events (subscriber_id);

-- The relay's queue id from its 250 reply to DATA ("queued as 4Xyz").
ALTER TABLE deliveries ADD COLUMN relay_id TEXT;
CREATE INDEX deliveries_relay_id ON deliveries (relay_id) WHERE relay_id IS NOT NULL;
CREATE INDEX deliveries_message_id ON deliveries (message_id) WHERE message_id IS NOT NULL;
