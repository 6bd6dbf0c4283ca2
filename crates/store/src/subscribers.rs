//! Subscribers one at a time: lookups, listing, unsubscribes, bounces,
//! forgetting, double opt-in.

use chrono::Utc;
use futures_core::Stream;
use futures_util::{StreamExt, TryStreamExt, stream};
use letterpress_core::{SubscriberStatus, normalize_key};

use crate::connect::{BeginWrite, suppressed_hashes_in, with_pool};
use crate::db;
use crate::model::{SUBSCRIBER_COLUMNS, SubscriberRow, count, ms, parse_status};
use crate::{
    AddOutcome, BounceEvent, BounceKind, Correlation, NewSubscriber, Store, StoreError, Subscriber,
    UpsertMode,
};

/// Rows per page of [`Store::stream_subscribers`].
const STREAM_PAGE: i64 = 1_000;

/// The suppressed statuses, as an SQL list (a constant, not a value).
macro_rules! suppressed_sql {
    () => {
        "('unsubscribed','bounced','complained')"
    };
}
pub(crate) use suppressed_sql;

impl Store {
    /// Adds one subscriber, or updates an existing one (matched without
    /// regard to letter case). Suppressed addresses are left alone unless
    /// `mode` is [`UpsertMode::Resubscribe`]. Same rules as [`Store::import`].
    pub async fn add_subscriber(
        &self,
        new: &NewSubscriber,
        mode: UpsertMode,
    ) -> Result<AddOutcome, StoreError> {
        let candidate = crate::import::Candidate {
            key: new.email.key(),
            new: new.clone(),
        };
        let classes = self.write_batch(vec![candidate], mode, false, true).await?;
        Ok(classes[0])
    }

    /// The subscriber with this address, in any letter case.
    pub async fn get_subscriber(&self, email: &str) -> Result<Option<Subscriber>, StoreError> {
        let key = normalize_key(email);
        let row: Option<SubscriberRow> = with_pool!(self, |p| {
            db::query_as(db::AssertSqlSafe(format!(
                "SELECT {SUBSCRIBER_COLUMNS} FROM subscribers WHERE email_key = $1"
            )))
            .bind(key)
            .fetch_optional(p)
            .await?
        });
        row.map(Subscriber::try_from).transpose()
    }

    /// The subscriber with this id.
    pub async fn get_subscriber_by_id(&self, id: i64) -> Result<Option<Subscriber>, StoreError> {
        let row: Option<SubscriberRow> = with_pool!(self, |p| {
            db::query_as(db::AssertSqlSafe(format!(
                "SELECT {SUBSCRIBER_COLUMNS} FROM subscribers WHERE id = $1"
            )))
            .bind(id)
            .fetch_optional(p)
            .await?
        });
        row.map(Subscriber::try_from).transpose()
    }

    /// Every subscriber (or those with `status`), in id order. Loads the whole
    /// list: use [`Store::stream_subscribers`] for exports.
    pub async fn list_subscribers(
        &self,
        status: Option<SubscriberStatus>,
    ) -> Result<Vec<Subscriber>, StoreError> {
        let status = status.map(|s| s.as_str());
        let rows: Vec<SubscriberRow> = with_pool!(self, |p| {
            db::query_as(db::AssertSqlSafe(format!(
                "SELECT {SUBSCRIBER_COLUMNS} FROM subscribers \
                 WHERE $1 IS NULL OR status = $1 ORDER BY id"
            )))
            .bind(status)
            .fetch_all(p)
            .await?
        });
        rows.into_iter().map(Subscriber::try_from).collect()
    }

    /// Every subscriber in id order, fetched in pages of 1,000 by keyset
    /// (`id > last`): memory stays flat in list size, and no read transaction
    /// or connection is held between pages, so a long export neither blocks
    /// SQLite's WAL checkpoints nor other writers. Rows changed during the
    /// export appear as they are when their page is read.
    pub fn stream_subscribers(&self) -> impl Stream<Item = Result<Subscriber, StoreError>> + '_ {
        stream::try_unfold(Some(0_i64), move |after| async move {
            let Some(after) = after else {
                return Ok(None);
            };
            let page = self.subscriber_page(after).await?;
            let next = match page.last() {
                Some(last) if page.len() as i64 == STREAM_PAGE => Some(last.id),
                _ => None,
            };
            if page.is_empty() {
                return Ok(None);
            }
            Ok::<_, StoreError>(Some((page, next)))
        })
        .map_ok(|page| stream::iter(page.into_iter().map(Ok)))
        .try_flatten()
        .boxed()
    }

    async fn subscriber_page(&self, after: i64) -> Result<Vec<Subscriber>, StoreError> {
        let rows: Vec<SubscriberRow> = with_pool!(self, |p| {
            db::query_as(db::AssertSqlSafe(format!(
                "SELECT {SUBSCRIBER_COLUMNS} FROM subscribers WHERE id > $1 ORDER BY id LIMIT $2"
            )))
            .bind(after)
            .bind(STREAM_PAGE)
            .fetch_all(p)
            .await?
        });
        rows.into_iter().map(Subscriber::try_from).collect()
    }

    /// Unsubscribes a pending or active subscriber by address, in any
    /// letter case, recording the time and `source`. Idempotent: returns
    /// whether anything changed (a bounced or complained subscriber stays
    /// so, an unknown address changes nothing).
    pub async fn unsubscribe_email(&self, email: &str, source: &str) -> Result<bool, StoreError> {
        let now = ms(Utc::now());
        let key = normalize_key(email);
        let done = with_pool!(self, |p| {
            db::query(
                "UPDATE subscribers SET status = 'unsubscribed', unsubscribed_at = $2, \
                 unsubscribe_source = $3, updated_at = $2 \
                 WHERE email_key = $1 AND status IN ('pending','active')",
            )
            .bind(key)
            .bind(now)
            .bind(source)
            .execute(p)
            .await?
            .rows_affected()
        });
        Ok(done > 0)
    }

    /// Records a bounce report for an address, as a
    /// [`Store::record_bounce_event`] from source `webhook` with an id of its
    /// own (each call is a new report), taken to be about the subscriber's
    /// latest sent delivery. Returns whether the address is suppressed after
    /// this report (`false` for an unknown address).
    pub async fn record_bounce(
        &self,
        email: &str,
        kind: BounceKind,
        soft_limit: u32,
    ) -> Result<bool, StoreError> {
        let event = BounceEvent {
            find: Correlation::Address(email.to_string()),
            kind,
            reason: None,
            status: None,
            occurred_at: Utc::now(),
            source: "webhook",
            event_id: format!("{:032x}", rand::random::<u128>()),
        };
        Ok(self
            .record_bounce_event(&event, soft_limit)
            .await?
            .suppressed)
    }

    /// Erases a subscriber's personal data: the row is deleted (deliveries
    /// keep their history with the subscriber set to NULL; their SMTP replies,
    /// which often quote the address, are blanked; unsettled ones are
    /// skipped) and HMAC-SHA256(current suppression key, lower-case
    /// address) is kept in `suppressed_hashes`, so adds, imports and signups
    /// of the address are refused from then on (by any store that lists that
    /// key in [`Store::with_suppression_keys`], current or previous).
    /// Forgetting an unknown address still records the hash. Returns whether
    /// anything changed; [`StoreError::NoSuppressionKey`] without a key.
    pub async fn forget(&self, email: &str) -> Result<bool, StoreError> {
        let now = ms(Utc::now());
        let email_key = normalize_key(email);
        let hash = self
            .suppression_hashes(&email_key)
            .next()
            .ok_or(StoreError::NoSuppressionKey)?;
        let changed = with_pool!(self, |p| {
            let mut tx = p.begin_write().await?;
            let id: Option<i64> =
                db::query_scalar("SELECT id FROM subscribers WHERE email_key = $1")
                    .bind(&email_key)
                    .fetch_optional(&mut *tx)
                    .await?;
            let inserted = db::query(
                "INSERT INTO suppressed_hashes (hash, reason, created_at) VALUES ($1, 'forgotten', $2) \
                 ON CONFLICT (hash) DO NOTHING",
            )
            .bind(&hash)
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if let Some(id) = id {
                db::query(
                    "UPDATE delivery_attempts SET reply = '' \
                     WHERE delivery_id IN (SELECT id FROM deliveries WHERE subscriber_id = $1)",
                )
                .bind(id)
                .execute(&mut *tx)
                .await?;
                // Bounce reasons quote the address too.
                db::query("UPDATE bounce_events SET reason = NULL WHERE subscriber_id = $1")
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                // Unsettled deliveries would otherwise wait forever for a
                // subscriber that no longer exists.
                db::query(
                    "UPDATE deliveries SET last_reply = CASE WHEN status IN ('queued','deferred') \
                     THEN 'subscriber forgotten' ELSE NULL END, \
                     status = CASE WHEN status IN ('queued','deferred') THEN 'skipped' ELSE status END, \
                     lease_owner = NULL, lease_until = NULL, updated_at = $2 \
                     WHERE subscriber_id = $1",
                )
                .bind(id)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                db::query("DELETE FROM subscribers WHERE id = $1")
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            id.is_some() || inserted > 0
        });
        Ok(changed)
    }

    /// Whether the address was forgotten under any suppression key (needs
    /// [`Store::with_suppression_keys`]).
    pub(crate) async fn is_forgotten(&self, email_key: &str) -> Result<bool, StoreError> {
        let hashes: Vec<String> = self.suppression_hashes(email_key).collect();
        if hashes.is_empty() {
            return Ok(false);
        }
        let found: Option<String> = with_pool!(self, |p| {
            suppressed_hashes_in("SELECT hash FROM", hashes.iter().map(String::as_str))
                .build_query_scalar()
                .fetch_optional(p)
                .await?
        });
        Ok(found.is_some())
    }

    /// How many subscribers have each status, every status listed (zeros
    /// included) in lifecycle order.
    pub async fn count_by_status(&self) -> Result<Vec<(SubscriberStatus, u64)>, StoreError> {
        let rows: Vec<(String, i64)> = with_pool!(self, |p| {
            db::query_as("SELECT status, COUNT(*) FROM subscribers GROUP BY status")
                .fetch_all(p)
                .await?
        });
        let mut out: Vec<(SubscriberStatus, u64)> =
            SubscriberStatus::ALL.iter().map(|s| (*s, 0)).collect();
        for (status, n) in rows {
            let status = parse_status(&status)?;
            if let Some(slot) = out.iter_mut().find(|(s, _)| *s == status) {
                slot.1 = count(n);
            }
        }
        Ok(out)
    }

    /// How many subscribers an issue would go to now (active ones).
    pub async fn count_audience(&self) -> Result<u64, StoreError> {
        let n: i64 = with_pool!(self, |p| {
            db::query_scalar("SELECT COUNT(*) FROM subscribers WHERE status = 'active'")
                .fetch_one(p)
                .await?
        });
        Ok(count(n))
    }
}
