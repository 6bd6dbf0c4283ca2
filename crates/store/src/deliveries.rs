//! The delivery queue: queries only. Retry policy, rate limits and SMTP live
//! in the sender.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::QueryBuilder;
use tracing::Instrument;

use crate::connect::{BeginWrite, Pool, with_pool};
use crate::model::{ClaimRow, count, from_ms, ms};
use crate::{Claim, IssueCounts, Outcome, OutcomeKind, Store, StoreError};

/// The selection of claimable deliveries, shared by both backends: unsettled,
/// due, not leased by a live worker, with a subscriber. `$3` is now, `$4` the
/// optional issue, `$5` the limit. Served by the partial index
/// `deliveries_due (next_attempt_at, id) WHERE status IN ('queued','deferred')`.
macro_rules! due_selection {
    () => {
        "SELECT id FROM deliveries \
         WHERE status IN ('queued','deferred') AND next_attempt_at <= $3 \
         AND (lease_until IS NULL OR lease_until < $3) AND subscriber_id IS NOT NULL \
         AND ($4 IS NULL OR issue_id = $4) \
         ORDER BY next_attempt_at, id LIMIT $5"
    };
}

const CLAIM_COLUMNS: &str =
    "d.id, d.issue_id, d.subscriber_id, s.email, s.name, s.status, d.attempts, d.created_at";

impl Store {
    /// Queues the issue for every active subscriber that has no delivery of
    /// it yet, in one `INSERT … SELECT … ON CONFLICT DO NOTHING`: running it
    /// again (a second `send`, a crash and restart) queues only subscribers
    /// added since. Returns how many were newly queued.
    pub async fn enqueue_audience(
        &self,
        issue_id: i64,
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let now = ms(now);
        let n = with_pool!(self, |p| {
            // The WHERE clause also keeps SQLite's parser from reading
            // ON CONFLICT as a join constraint of the SELECT.
            sqlx::query(
                "INSERT INTO deliveries (issue_id, subscriber_id, status, attempts, next_attempt_at, created_at, updated_at) \
                 SELECT $1, id, 'queued', 0, $2, $2, $2 FROM subscribers WHERE status = 'active' \
                 ON CONFLICT (issue_id, subscriber_id) DO NOTHING",
            )
            .bind(issue_id)
            .bind(now)
            .execute(p)
            .await?
            .rows_affected()
        });
        Ok(n)
    }

    /// Leases up to `limit` due deliveries (of one issue, or of any) to
    /// `worker` until `now + lease`, and returns them with their subscriber.
    /// A lease that runs out (a worker died) makes the delivery claimable
    /// again; several workers, processes or machines may claim at once and
    /// never get the same delivery while its lease lives.
    pub async fn claim_due(
        &self,
        worker: &str,
        issue_id: Option<i64>,
        limit: u32,
        lease: Duration,
        now: DateTime<Utc>,
    ) -> Result<Vec<Claim>, StoreError> {
        let span = tracing::debug_span!("claim_due", worker, ?issue_id, limit);
        self.claim_due_inner(worker, issue_id, limit, lease, now)
            .instrument(span)
            .await
    }

    async fn claim_due_inner(
        &self,
        worker: &str,
        issue_id: Option<i64>,
        limit: u32,
        lease: Duration,
        now: DateTime<Utc>,
    ) -> Result<Vec<Claim>, StoreError> {
        let until = ms(now) + i64::try_from(lease.as_millis()).unwrap_or(i64::MAX / 2);
        let now = ms(now);
        let limit = i64::from(limit);
        let rows: Vec<ClaimRow> = match &self.pool {
            // FOR UPDATE SKIP LOCKED: a second worker skips the rows the first
            // is claiming instead of queueing behind its lock, so workers
            // sharing the queue neither block each other nor claim twice
            // (a row committed meanwhile is re-checked against the WHERE on
            // its newest version). One statement: select, lease and join.
            Pool::Postgres(p) => {
                sqlx::query_as(concat!(
                    "WITH picked AS (",
                    due_selection!(),
                    " FOR UPDATE SKIP LOCKED), claimed AS (UPDATE deliveries d SET lease_owner = $1, lease_until = $2, updated_at = $3 \
                     FROM picked WHERE d.id = picked.id \
                     RETURNING d.id, d.issue_id, d.subscriber_id, d.attempts, d.created_at) \
                     SELECT d.id, d.issue_id, d.subscriber_id, s.email, s.name, s.status, d.attempts, d.created_at \
                     FROM claimed d JOIN subscribers s ON s.id = d.subscriber_id ORDER BY d.id"
                ))
                .bind(worker)
                .bind(until)
                .bind(now)
                .bind(issue_id)
                .bind(limit)
                .fetch_all(p)
                .await?
            }
            // SQLite has one writer at a time; BEGIN IMMEDIATE takes that
            // lock before the selection is read, so two claimers serialise
            // (waiting in the busy handler) and the second sees the first's
            // leases.
            Pool::Sqlite(p) => {
                let mut tx = p.begin_write().await?;
                let ids: Vec<i64> = sqlx::query_scalar(concat!(
                    "UPDATE deliveries SET lease_owner = $1, lease_until = $2, updated_at = $3 WHERE id IN (",
                    due_selection!(),
                    ") RETURNING id"
                ))
                .bind(worker)
                .bind(until)
                .bind(now)
                .bind(issue_id)
                .bind(limit)
                .fetch_all(&mut *tx)
                .await?;
                let mut rows = Vec::with_capacity(ids.len());
                for chunk in ids.chunks(5_000) {
                    let mut qb = QueryBuilder::new(format!(
                        "SELECT {CLAIM_COLUMNS} FROM deliveries d JOIN subscribers s ON s.id = d.subscriber_id WHERE d.id IN ("
                    ));
                    let mut list = qb.separated(", ");
                    for id in chunk {
                        list.push_bind(*id);
                    }
                    qb.push(") ORDER BY d.id");
                    rows.extend(qb.build_query_as::<ClaimRow>().fetch_all(&mut *tx).await?);
                }
                tx.commit().await?;
                rows
            }
        };
        tracing::debug!(claimed = rows.len(), "claimed");
        rows.into_iter().map(Claim::try_from).collect()
    }

    /// Records a batch of attempt outcomes in one transaction: each delivery
    /// gets `attempts + 1`, its lease cleared, its new status and reply, and
    /// one `delivery_attempts` row. `Sent` stores the Message-ID and time and
    /// resets the subscriber's soft-bounce count; `Bounced` fails the
    /// delivery and marks the subscriber bounced.
    pub async fn record_outcomes(&self, outcomes: &[Outcome]) -> Result<(), StoreError> {
        if outcomes.is_empty() {
            return Ok(());
        }
        let span = tracing::debug_span!("record_outcomes", n = outcomes.len());
        async move {
        with_pool!(self, |p| {
            let mut tx = p.begin_write().await?;
            for o in outcomes {
                let at = ms(o.at);
                let (status, next, message_id, sent_at) = match &o.kind {
                    OutcomeKind::Sent { message_id } => {
                        ("sent", None, Some(message_id.as_str()), Some(at))
                    }
                    OutcomeKind::Deferred { next_attempt_at } => {
                        ("deferred", Some(ms(*next_attempt_at)), None, None)
                    }
                    OutcomeKind::Failed | OutcomeKind::Bounced => ("failed", None, None, None),
                    OutcomeKind::Skipped => ("skipped", None, None, None),
                };
                let subscriber: Option<Option<i64>> = sqlx::query_scalar(
                    "UPDATE deliveries SET status = $2, attempts = attempts + 1, \
                     next_attempt_at = COALESCE($3, next_attempt_at), \
                     message_id = COALESCE($4, message_id), sent_at = COALESCE($5, sent_at), \
                     last_reply = $6, lease_owner = NULL, lease_until = NULL, updated_at = $7 \
                     WHERE id = $1 RETURNING subscriber_id",
                )
                .bind(o.delivery_id)
                .bind(status)
                .bind(next)
                .bind(message_id)
                .bind(sent_at)
                .bind(&o.reply)
                .bind(at)
                .fetch_optional(&mut *tx)
                .await?;
                let Some(subscriber) = subscriber else {
                    continue; // unknown delivery id: nothing to record against
                };
                sqlx::query(
                    "INSERT INTO delivery_attempts (delivery_id, attempted_at, reply, outcome) VALUES ($1, $2, $3, $4)",
                )
                .bind(o.delivery_id)
                .bind(at)
                .bind(&o.reply)
                .bind(o.kind.name())
                .execute(&mut *tx)
                .await?;
                match (&o.kind, subscriber) {
                    (OutcomeKind::Sent { .. }, Some(sid)) => {
                        sqlx::query("UPDATE subscribers SET soft_bounces = 0 WHERE id = $1 AND soft_bounces <> 0")
                            .bind(sid)
                            .execute(&mut *tx)
                            .await?;
                    }
                    (OutcomeKind::Bounced, Some(sid)) => {
                        sqlx::query(
                            "UPDATE subscribers SET status = 'bounced', updated_at = $2, \
                             unsubscribed_at = COALESCE(unsubscribed_at, $2), \
                             unsubscribe_source = COALESCE(unsubscribe_source, 'bounce') \
                             WHERE id = $1 AND status IN ('pending','active','unsubscribed')",
                        )
                        .bind(sid)
                        .bind(at)
                        .execute(&mut *tx)
                        .await?;
                    }
                    _ => {}
                }
            }
            tx.commit().await?;
        });
        Ok(())
        }
        .instrument(span)
        .await
    }

    /// Gives back `worker`'s leases on deliveries it did not settle (on
    /// shutdown), so other workers may claim them at once. Returns how many.
    pub async fn release_leases(&self, worker: &str) -> Result<u64, StoreError> {
        let n = with_pool!(self, |p| {
            sqlx::query(
                "UPDATE deliveries SET lease_owner = NULL, lease_until = NULL \
                 WHERE lease_owner = $1 AND status IN ('queued','deferred')",
            )
            .bind(worker)
            .execute(p)
            .await?
            .rows_affected()
        });
        Ok(n)
    }

    /// Extends `worker`'s leases on the deliveries `ids` (those it claimed
    /// and has not settled) to `now + lease`: a worker renews them while it
    /// works, so a batch that takes longer than one lease is not taken over
    /// by another worker while this one still goes through it. A delivery
    /// that is settled, or leased to another worker, is left alone.
    /// Returns how many were renewed.
    pub async fn renew_leases(
        &self,
        worker: &str,
        ids: &[i64],
        lease: Duration,
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let until = ms(now) + i64::try_from(lease.as_millis()).unwrap_or(i64::MAX / 2);
        let mut n = 0;
        for chunk in ids.chunks(5_000) {
            // Built in each arm: the builder's type depends on the backend.
            n += with_pool!(self, |p| {
                let mut qb = QueryBuilder::new("UPDATE deliveries SET lease_until = ");
                qb.push_bind(until)
                    .push(" WHERE lease_owner = ")
                    .push_bind(worker)
                    .push(" AND status IN ('queued','deferred') AND id IN (");
                let mut list = qb.separated(", ");
                for id in chunk {
                    list.push_bind(*id);
                }
                qb.push(")");
                qb.build().execute(p).await?.rows_affected()
            });
        }
        Ok(n)
    }

    /// Delivery counts per issue (or of the issue `slug`), in issue order.
    /// `queued` and `deferred` leave out deliveries leased right now, which
    /// are counted as `sending`, so the six counts add up to `total`.
    pub async fn issue_counts(&self, slug: Option<&str>) -> Result<Vec<IssueCounts>, StoreError> {
        let now = ms(Utc::now());
        type Row = (String, i64, i64, i64, i64, i64, i64, i64);
        let rows: Vec<Row> = with_pool!(self, |p| {
            sqlx::query_as(
                "SELECT i.slug, COUNT(d.id), \
                 COUNT(d.id) FILTER (WHERE d.status = 'queued' AND (d.lease_until IS NULL OR d.lease_until < $2)), \
                 COUNT(d.id) FILTER (WHERE d.status = 'deferred' AND (d.lease_until IS NULL OR d.lease_until < $2)), \
                 COUNT(d.id) FILTER (WHERE d.status IN ('queued','deferred') AND d.lease_until >= $2), \
                 COUNT(d.id) FILTER (WHERE d.status = 'sent'), \
                 COUNT(d.id) FILTER (WHERE d.status = 'failed'), \
                 COUNT(d.id) FILTER (WHERE d.status = 'skipped') \
                 FROM issues i LEFT JOIN deliveries d ON d.issue_id = i.id \
                 WHERE $1 IS NULL OR i.slug = $1 \
                 GROUP BY i.id, i.slug ORDER BY i.id",
            )
            .bind(slug)
            .bind(now)
            .fetch_all(p)
            .await?
        });
        Ok(rows
            .into_iter()
            .map(
                |(slug, total, queued, deferred, sending, sent, failed, skipped)| IssueCounts {
                    slug,
                    total: count(total),
                    queued: count(queued),
                    deferred: count(deferred),
                    sending: count(sending),
                    sent: count(sent),
                    failed: count(failed),
                    skipped: count(skipped),
                },
            )
            .collect())
    }

    /// Puts an issue's failed deliveries back in the queue, due `now`
    /// (deliveries of forgotten subscribers stay failed). Returns how many.
    pub async fn retry_failed(&self, issue_id: i64, now: DateTime<Utc>) -> Result<u64, StoreError> {
        let now = ms(now);
        let n = with_pool!(self, |p| {
            sqlx::query(
                "UPDATE deliveries SET status = 'queued', next_attempt_at = $2, updated_at = $2 \
                 WHERE issue_id = $1 AND status = 'failed' AND subscriber_id IS NOT NULL",
            )
            .bind(issue_id)
            .bind(now)
            .execute(p)
            .await?
            .rows_affected()
        });
        Ok(n)
    }

    /// When the next unsettled delivery (of one issue, or of any) becomes
    /// claimable: its due time, or its lease's end if a worker holds it.
    /// `None` when nothing is left to send.
    pub async fn next_due_at(
        &self,
        issue_id: Option<i64>,
    ) -> Result<Option<DateTime<Utc>>, StoreError> {
        let at: Option<i64> = with_pool!(self, |p| {
            sqlx::query_scalar(
                "SELECT MIN(CASE WHEN lease_until IS NOT NULL AND lease_until > next_attempt_at \
                 THEN lease_until ELSE next_attempt_at END) \
                 FROM deliveries WHERE status IN ('queued','deferred') AND subscriber_id IS NOT NULL \
                 AND ($1 IS NULL OR issue_id = $1)",
            )
            .bind(issue_id)
            .fetch_one(p)
            .await?
        });
        at.map(from_ms).transpose()
    }

    /// Gives up on an issue's deferred deliveries queued before
    /// `created_before` (older than the retry max age): they become failed
    /// with `reply`. Leased ones are left to their worker. Returns how many.
    pub async fn settle_expired(
        &self,
        issue_id: i64,
        created_before: DateTime<Utc>,
        reply: &str,
    ) -> Result<u64, StoreError> {
        let now = ms(Utc::now());
        let n = with_pool!(self, |p| {
            sqlx::query(
                "UPDATE deliveries SET status = 'failed', last_reply = $3, updated_at = $4 \
                 WHERE issue_id = $1 AND status = 'deferred' AND created_at < $2 \
                 AND (lease_until IS NULL OR lease_until < $4)",
            )
            .bind(issue_id)
            .bind(ms(created_before))
            .bind(reply)
            .bind(now)
            .execute(p)
            .await?
            .rows_affected()
        });
        Ok(n)
    }
}
