//! Requests already acted on: a webhook is processed once however often it
//! is delivered (senders retry, and a captured request could be replayed
//! within the signature's time window).

use chrono::{DateTime, Utc};

use crate::connect::with_pool;
use crate::db;
use crate::model::ms;
use crate::{Store, StoreError};

/// How long a key is remembered: longer than any signature stays fresh.
const KEEP_MS: i64 = 15 * 60 * 1000;

impl Store {
    /// Records `key` (e.g. a request's signature) as seen at `now`; `true`
    /// the first time, `false` for a repeat. Keys older than a quarter of an
    /// hour are forgotten on the way, so the table stays small.
    pub async fn first_sighting(&self, key: &str, now: DateTime<Utc>) -> Result<bool, StoreError> {
        let now = ms(now);
        let inserted = with_pool!(self, |p| {
            db::query("DELETE FROM seen_webhooks WHERE seen_at < $1")
                .bind(now - KEEP_MS)
                .execute(p)
                .await?;
            db::query(
                "INSERT INTO seen_webhooks (key, seen_at) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING",
            )
            .bind(key)
            .bind(now)
            .execute(p)
            .await?
            .rows_affected()
        });
        Ok(inserted == 1)
    }

    /// Forgets `key` again: what it named was not acted on after all (the
    /// store failed), so the sender's retry must not be taken for a repeat.
    pub async fn forget_sighting(&self, key: &str) -> Result<(), StoreError> {
        with_pool!(self, |p| {
            db::query("DELETE FROM seen_webhooks WHERE key = $1")
                .bind(key)
                .execute(p)
                .await?;
        });
        Ok(())
    }
}
