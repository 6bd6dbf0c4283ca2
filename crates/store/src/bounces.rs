//! Bounces, complaints and unsubscribe requests reported after a relay
//! accepted the message: one event model for provider webhooks, DSNs and
//! ARF reports, kept in `bounce_events`.
//!
//! The rules, applied in the transaction that records the event:
//! - an event is recorded once per (source, event id); a repeat changes
//!   nothing;
//! - it is traced to its delivery by id, Message-ID (with or without `<>`)
//!   or relay queue id; an event that names only an address is taken to be
//!   about that subscriber's latest sent delivery (or none, if nothing was
//!   sent to them yet);
//! - hard → bounced, complaint → complained, unsubscribe request →
//!   unsubscribed, all at once;
//! - soft → bounced when the subscriber's last `soft_limit` sent deliveries
//!   (across issues) each have a soft or hard event. A relay accepts every
//!   message with 250 and reports later, so the 250 cannot reset the count;
//!   a sent delivery that no bounce is reported for does (it breaks the
//!   run). A subscriber nothing was sent to yet is bounced after
//!   `soft_limit` soft reports.

use chrono::Utc;
use letterpress_core::normalize_key;
use tracing::Instrument;

use crate::connect::{BeginWrite, with_pool};
use crate::db;
use crate::model::{count, ms, parse_status};
use crate::{BounceEvent, BounceKind, BounceOutcome, Correlation, IssueBounces, Store, StoreError};

/// The longest reason kept, in characters.
const REASON_CHARS: usize = 1000;

/// A delivery's id and its subscriber's (NULL once forgotten).
type Found = (Option<i64>, Option<i64>);

impl Store {
    /// Records one bounce event and applies it (see the module's rules), in
    /// one transaction. `soft_limit` is `server.soft_bounce_limit` (at
    /// least 1).
    pub async fn record_bounce_event(
        &self,
        e: &BounceEvent,
        soft_limit: u32,
    ) -> Result<BounceOutcome, StoreError> {
        let span = tracing::debug_span!(
            "record_bounce_event",
            source = e.source,
            kind = e.kind.as_str()
        );
        self.record_bounce_event_inner(e, soft_limit)
            .instrument(span)
            .await
    }

    async fn record_bounce_event_inner(
        &self,
        e: &BounceEvent,
        soft_limit: u32,
    ) -> Result<BounceOutcome, StoreError> {
        let now = ms(Utc::now());
        let limit = i64::from(soft_limit.max(1));
        let reason: Option<String> = e
            .reason
            .as_deref()
            .map(|r| r.chars().take(REASON_CHARS).collect());
        let outcome = with_pool!(self, |p| {
            let mut tx = p.begin_write().await?;
            let (delivery_id, subscriber_id): Found = match &e.find {
                Correlation::Delivery(id) => {
                    db::query_as("SELECT id, subscriber_id FROM deliveries WHERE id = $1")
                        .bind(*id)
                        .fetch_optional(&mut *tx)
                        .await?
                        .map(|(d, s): (i64, Option<i64>)| (Some(d), s))
                        .unwrap_or((None, None))
                }
                Correlation::MessageId(mid) => {
                    let bare = mid.trim().trim_start_matches('<').trim_end_matches('>');
                    db::query_as(
                        "SELECT id, subscriber_id FROM deliveries WHERE message_id IN ($1, $2) \
                         ORDER BY id DESC LIMIT 1",
                    )
                    .bind(format!("<{bare}>"))
                    .bind(bare)
                    .fetch_optional(&mut *tx)
                    .await?
                    .map(|(d, s): (i64, Option<i64>)| (Some(d), s))
                    .unwrap_or((None, None))
                }
                Correlation::RelayId(relay) => db::query_as(
                    "SELECT id, subscriber_id FROM deliveries WHERE relay_id = $1 \
                     ORDER BY id DESC LIMIT 1",
                )
                .bind(relay.trim())
                .fetch_optional(&mut *tx)
                .await?
                .map(|(d, s): (i64, Option<i64>)| (Some(d), s))
                .unwrap_or((None, None)),
                Correlation::Address(address) => {
                    let sub: Option<i64> =
                        db::query_scalar("SELECT id FROM subscribers WHERE email_key = $1")
                            .bind(normalize_key(address))
                            .fetch_optional(&mut *tx)
                            .await?;
                    match sub {
                        None => (None, None),
                        Some(sub) => {
                            let latest: Option<i64> = db::query_scalar(
                                "SELECT id FROM deliveries WHERE subscriber_id = $1 \
                                 AND status = 'sent' ORDER BY sent_at DESC, id DESC LIMIT 1",
                            )
                            .bind(sub)
                            .fetch_optional(&mut *tx)
                            .await?;
                            (latest, Some(sub))
                        }
                    }
                }
            };
            let inserted: Option<i64> = db::query_scalar(
                "INSERT INTO bounce_events (source, event_id, delivery_id, subscriber_id, kind, \
                 reason, status, occurred_at, received_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
                 ON CONFLICT (source, event_id) DO NOTHING RETURNING id",
            )
            .bind(e.source)
            .bind(&e.event_id)
            .bind(delivery_id)
            .bind(subscriber_id)
            .bind(e.kind.as_str())
            .bind(&reason)
            .bind(&e.status)
            .bind(ms(e.occurred_at))
            .bind(now)
            .fetch_optional(&mut *tx)
            .await?;
            let duplicate = inserted.is_none();
            let (delivery_id, subscriber_id) = if duplicate {
                // What the first recording found, for the answer only.
                db::query_as(
                    "SELECT delivery_id, subscriber_id FROM bounce_events \
                     WHERE source = $1 AND event_id = $2",
                )
                .bind(e.source)
                .bind(&e.event_id)
                .fetch_optional(&mut *tx)
                .await?
                .unwrap_or((None, None))
            } else {
                (delivery_id, subscriber_id)
            };
            if !duplicate && let Some(sub) = subscriber_id {
                let suppress = match e.kind {
                    // A hard bounce is stronger news than an unsubscribe: the
                    // address does not exist. A complaint is the strongest.
                    BounceKind::Hard => Some(
                        "UPDATE subscribers SET status = 'bounced', updated_at = $2, \
                         unsubscribed_at = COALESCE(unsubscribed_at, $2), \
                         unsubscribe_source = COALESCE(unsubscribe_source, 'bounce') \
                         WHERE id = $1 AND status IN ('pending','active','unsubscribed')",
                    ),
                    BounceKind::Complaint => Some(
                        "UPDATE subscribers SET status = 'complained', updated_at = $2, \
                         unsubscribed_at = COALESCE(unsubscribed_at, $2), \
                         unsubscribe_source = COALESCE(unsubscribe_source, 'complaint') \
                         WHERE id = $1 AND status <> 'complained'",
                    ),
                    BounceKind::UnsubscribeRequest => Some(
                        "UPDATE subscribers SET status = 'unsubscribed', updated_at = $2, \
                         unsubscribed_at = $2, unsubscribe_source = 'provider' \
                         WHERE id = $1 AND status IN ('pending','active')",
                    ),
                    BounceKind::Soft => {
                        // The last `limit` sent deliveries, and how many of
                        // them have a soft or hard event.
                        let (sent, bounced): (i64, i64) = db::query_as(
                            "SELECT COUNT(*), COALESCE(SUM(CASE WHEN EXISTS (SELECT 1 FROM \
                             bounce_events b WHERE b.delivery_id = last.id \
                             AND b.kind IN ('soft','hard')) THEN 1 ELSE 0 END), 0) \
                             FROM (SELECT id FROM deliveries WHERE subscriber_id = $1 \
                             AND status = 'sent' ORDER BY sent_at DESC, id DESC LIMIT $2) AS last",
                        )
                        .bind(sub)
                        .bind(limit)
                        .fetch_one(&mut *tx)
                        .await?;
                        let reached = if sent == 0 {
                            let reports: i64 = db::query_scalar(
                                "SELECT COUNT(*) FROM bounce_events WHERE subscriber_id = $1 \
                                 AND delivery_id IS NULL AND kind IN ('soft','hard')",
                            )
                            .bind(sub)
                            .fetch_one(&mut *tx)
                            .await?;
                            reports >= limit
                        } else {
                            sent >= limit && bounced >= limit
                        };
                        reached.then_some(
                            "UPDATE subscribers SET status = 'bounced', updated_at = $2, \
                             unsubscribed_at = $2, unsubscribe_source = 'bounce' \
                             WHERE id = $1 AND status IN ('pending','active')",
                        )
                    }
                };
                if let Some(sql) = suppress {
                    db::query(sql).bind(sub).bind(now).execute(&mut *tx).await?;
                }
            }
            let status: Option<String> = match subscriber_id {
                Some(sub) => {
                    db::query_scalar("SELECT status FROM subscribers WHERE id = $1")
                        .bind(sub)
                        .fetch_optional(&mut *tx)
                        .await?
                }
                None => None,
            };
            tx.commit().await?;
            let suppressed = match &status {
                Some(s) => parse_status(s)?.is_suppressed(),
                None => false,
            };
            BounceOutcome {
                duplicate,
                delivery_id,
                subscriber_found: status.is_some(),
                suppressed,
            }
        });
        tracing::debug!(
            duplicate = outcome.duplicate,
            delivery = ?outcome.delivery_id,
            suppressed = outcome.suppressed,
            "bounce event"
        );
        Ok(outcome)
    }

    /// Bounce events per issue (or of the issue `slug`), in slug order:
    /// issues without any are left out.
    pub async fn issue_bounces(&self, slug: Option<&str>) -> Result<Vec<IssueBounces>, StoreError> {
        let rows: Vec<(String, i64, i64, i64)> = with_pool!(self, |p| {
            db::query_as(
                "SELECT i.slug, \
                 COUNT(DISTINCT CASE WHEN b.kind IN ('hard','soft') AND d.status = 'sent' \
                       THEN d.id END), \
                 COUNT(DISTINCT CASE WHEN b.kind = 'complaint' THEN d.id END), \
                 COUNT(DISTINCT CASE WHEN b.kind = 'unsubscribe' THEN d.id END) \
                 FROM bounce_events b JOIN deliveries d ON d.id = b.delivery_id \
                 JOIN issues i ON i.id = d.issue_id \
                 WHERE $1 IS NULL OR i.slug = $1 GROUP BY i.slug ORDER BY i.slug",
            )
            .bind(slug)
            .fetch_all(p)
            .await?
        });
        Ok(rows
            .into_iter()
            .map(|(slug, bounced, complaints, unsubscribes)| IssueBounces {
                slug,
                bounced_after_acceptance: count(bounced),
                complaints: count(complaints),
                unsubscribe_requests: count(unsubscribes),
            })
            .collect())
    }

    /// How many bounce events were recorded, per source and kind (for
    /// `/metrics`), in source then kind order.
    pub async fn bounce_event_counts(&self) -> Result<Vec<(String, BounceKind, u64)>, StoreError> {
        let rows: Vec<(String, String, i64)> = with_pool!(self, |p| {
            db::query_as(
                "SELECT source, kind, COUNT(*) FROM bounce_events GROUP BY source, kind \
                 ORDER BY source, kind",
            )
            .fetch_all(p)
            .await?
        });
        rows.into_iter()
            .map(|(source, kind, n)| Ok((source, BounceKind::parse(&kind)?, count(n))))
            .collect()
    }

    /// The bounce events traced to a delivery, oldest first: (kind, status,
    /// source).
    pub async fn delivery_bounces(
        &self,
        delivery_id: i64,
    ) -> Result<Vec<(BounceKind, Option<String>, String)>, StoreError> {
        let rows: Vec<(String, Option<String>, String)> = with_pool!(self, |p| {
            db::query_as(
                "SELECT kind, status, source FROM bounce_events WHERE delivery_id = $1 ORDER BY id",
            )
            .bind(delivery_id)
            .fetch_all(p)
            .await?
        });
        rows.into_iter()
            .map(|(kind, status, source)| Ok((BounceKind::parse(&kind)?, status, source)))
            .collect()
    }
}

impl Store {
    /// The delivery a correlation names, without recording anything: a
    /// caller with several ways to name the message (a provider's own id,
    /// the Message-ID, the address) tries them in turn and records the event
    /// with the first that is found. An address names the subscriber's
    /// latest sent delivery.
    pub async fn find_delivery(&self, find: &Correlation) -> Result<Option<i64>, StoreError> {
        let id: Option<i64> =
            with_pool!(self, |p| {
                match find {
                Correlation::Delivery(id) => {
                    db::query_scalar("SELECT id FROM deliveries WHERE id = $1")
                        .bind(*id)
                        .fetch_optional(p)
                        .await?
                }
                Correlation::MessageId(mid) => {
                    let bare = mid.trim().trim_start_matches('<').trim_end_matches('>');
                    db::query_scalar(
                        "SELECT id FROM deliveries WHERE message_id IN ($1, $2) \
                         ORDER BY id DESC LIMIT 1",
                    )
                    .bind(format!("<{bare}>"))
                    .bind(bare)
                    .fetch_optional(p)
                    .await?
                }
                Correlation::RelayId(relay) => db::query_scalar(
                    "SELECT id FROM deliveries WHERE relay_id = $1 ORDER BY id DESC LIMIT 1",
                )
                .bind(relay.trim())
                .fetch_optional(p)
                .await?,
                Correlation::Address(address) => db::query_scalar(
                    "SELECT d.id FROM deliveries d JOIN subscribers s ON s.id = d.subscriber_id \
                     WHERE s.email_key = $1 AND d.status = 'sent' \
                     ORDER BY d.sent_at DESC, d.id DESC LIMIT 1",
                )
                .bind(normalize_key(address))
                .fetch_optional(p)
                .await?,
            }
            });
        Ok(id)
    }
}
