//! The delivery queue: queries only. Retry policy, rate limits and SMTP live
//! in the sender.

use std::time::Duration;

use crate::db::QueryBuilder;
use chrono::{DateTime, Utc};
use tracing::Instrument;

use crate::connect::{BeginWrite, Pool, with_pool};
use crate::db;
use crate::model::{ClaimRow, count, from_ms, ms};
use crate::{AttemptRecord, Claim, IssueCounts, Outcome, OutcomeKind, Store, StoreError};

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

// The statements of [`Store::record_outcomes`], each over `$rows`: the
// batch's JSON array (`$1`) as a relation `j(did, ab, st, nx, mid, rl, sat,
// rp, ts, kd)` (delivery id, its attempts when claimed, new status, next
// attempt, Message-ID, relay queue id, sent at, reply, attempt time,
// outcome kind). `$2` is when the batch's bounces happened. Each applies
// only to a delivery whose attempts are still `ab` (see
// [`Outcome::attempts_before`]).
macro_rules! record_deliveries {
    ($rows:expr) => {
        concat!(
            "UPDATE deliveries SET status = j.st, attempts = deliveries.attempts + 1, \
             next_attempt_at = COALESCE(j.nx, deliveries.next_attempt_at), \
             message_id = COALESCE(j.mid, deliveries.message_id), \
             relay_id = COALESCE(j.rl, deliveries.relay_id), \
             sent_at = COALESCE(j.sat, deliveries.sent_at), last_reply = j.rp, \
             lease_owner = NULL, lease_until = NULL, updated_at = j.ts \
             FROM ",
            $rows,
            " AS j WHERE deliveries.id = j.did AND deliveries.attempts = j.ab"
        )
    };
}
macro_rules! record_attempts {
    ($rows:expr) => {
        concat!(
            "INSERT INTO delivery_attempts (delivery_id, attempted_at, reply, outcome) \
             SELECT j.did, j.ts, j.rp, j.kd FROM ",
            $rows,
            " AS j WHERE EXISTS (SELECT 1 FROM deliveries d WHERE d.id = j.did AND d.attempts = j.ab)"
        )
    };
}
macro_rules! record_bounced {
    ($rows:expr) => {
        concat!(
            "UPDATE subscribers SET status = 'bounced', updated_at = $2, \
             unsubscribed_at = COALESCE(unsubscribed_at, $2), \
             unsubscribe_source = COALESCE(unsubscribe_source, 'bounce') \
             WHERE status IN ('pending','active','unsubscribed') AND id IN \
             (SELECT d.subscriber_id FROM deliveries d JOIN ",
            $rows,
            " AS j ON d.id = j.did WHERE j.kd = 'bounced' AND d.attempts = j.ab)"
        )
    };
}

/// SQLite reads the JSON with `json_each` and `->>`, which give integers as
/// integers and `null` as NULL.
macro_rules! sqlite_rows {
    () => {
        "(SELECT value ->> 'did' AS did, value ->> 'ab' AS ab, value ->> 'st' AS st, value ->> 'nx' AS nx, \
         value ->> 'mid' AS mid, value ->> 'rl' AS rl, value ->> 'sat' AS sat, value ->> 'rp' AS rp, \
         value ->> 'ts' AS ts, value ->> 'kd' AS kd FROM json_each($1))"
    };
}

/// PostgreSQL types the JSON's fields with `jsonb_to_recordset`. The
/// parameter is sent as text (what sqlx binds a `String` as) and cast.
macro_rules! pg_rows {
    () => {
        "(SELECT * FROM jsonb_to_recordset($1::text::jsonb) AS x(did bigint, ab bigint, st text, \
         nx bigint, mid text, rl text, sat bigint, rp text, ts bigint, kd text))"
    };
}

/// All three in one string: sqlx runs every statement of a SQLite query,
/// binding `$1` and `$2` by number in each (the bounce statement changes
/// nothing when the batch has no bounce). The deliveries last: the other
/// two pick the outcomes that apply by the attempts the deliveries have
/// before it.
const SQLITE_RECORD: &str = concat!(
    record_attempts!(sqlite_rows!()),
    "; ",
    record_bounced!(sqlite_rows!()),
    "; ",
    record_deliveries!(sqlite_rows!())
);
/// PostgreSQL: all of it in one statement, so one round trip and one
/// commit per batch (five round trips before: BEGIN, three or four
/// statements, COMMIT), and the JSON is read once. Data-modifying CTEs see
/// one snapshot and may not change a row twice, so a subscriber the batch
/// bounced more than once is one row of `b`. (A sent message no longer
/// resets a soft-bounce run: a relay accepts everything, see `bounces.rs`.)
///
/// `deliveries.id = ANY(ARRAY(SELECT did FROM j))` names the batch's
/// delivery ids as an array, a condition the planner can put on the
/// primary key. Without it the planner sees only the join
/// with `jsonb_to_recordset`, which it guesses at 100 rows, and below some
/// 50,000 deliveries it found a sequential scan of the whole table cheaper
/// than 100 index lookups: every group commit of 20 outcomes read every
/// delivery (auto_explain, 20,000 deliveries: 4 ms a batch, most of the
/// server's CPU per message; see `benches/README.md`).
const PG_RECORD: &str = concat!(
    "WITH j AS ",
    pg_rows!(),
    ", u AS (",
    record_deliveries!("j"),
    " AND deliveries.id = ANY(ARRAY(SELECT did FROM j)) RETURNING deliveries.id, deliveries.subscriber_id, j.ts, j.rp, j.kd), \
     a AS (INSERT INTO delivery_attempts (delivery_id, attempted_at, reply, outcome) \
     SELECT id, ts, rp, kd FROM u), \
     b AS (SELECT DISTINCT subscriber_id AS sid FROM u \
     WHERE kd = 'bounced' AND subscriber_id IS NOT NULL), \
     s AS (UPDATE subscribers SET status = 'bounced', updated_at = $2, \
     unsubscribed_at = COALESCE(subscribers.unsubscribed_at, $2), \
     unsubscribe_source = COALESCE(subscribers.unsubscribe_source, 'bounce') \
     FROM b WHERE subscribers.id = b.sid \
     AND subscribers.status IN ('pending','active','unsubscribed')) \
     SELECT COUNT(*) FROM u"
);

/// One outcome as a row of the JSON array the record statements read.
#[derive(serde::Serialize)]
struct OutcomeRow<'a> {
    did: i64,
    ab: u32,
    st: &'static str,
    nx: Option<i64>,
    mid: Option<&'a str>,
    rl: Option<&'a str>,
    sat: Option<i64>,
    rp: &'a str,
    ts: i64,
    kd: &'static str,
}

impl<'a> From<&'a Outcome> for OutcomeRow<'a> {
    fn from(o: &'a Outcome) -> Self {
        let at = ms(o.at);
        let (st, nx, mid, rl, sat) = match &o.kind {
            OutcomeKind::Sent {
                message_id,
                relay_id,
            } => (
                "sent",
                None,
                Some(message_id.as_str()),
                relay_id.as_deref(),
                Some(at),
            ),
            OutcomeKind::Deferred { next_attempt_at } => {
                ("deferred", Some(ms(*next_attempt_at)), None, None, None)
            }
            OutcomeKind::Failed | OutcomeKind::Bounced => ("failed", None, None, None, None),
            OutcomeKind::Skipped => ("skipped", None, None, None, None),
        };
        Self {
            did: o.delivery_id,
            ab: o.attempts_before,
            st,
            nx,
            mid,
            rl,
            sat,
            rp: &o.reply,
            ts: at,
            kd: o.kind.name(),
        }
    }
}

const CLAIM_COLUMNS: &str = "d.id, d.issue_id, d.subscriber_id, s.email, s.name, s.status, s.token_salt, d.attempts, d.created_at";

impl Store {
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
            // The lease and the join name their rows by `= ANY(ARRAY(…))`,
            // which the planner serves from the primary keys: joined to a
            // CTE it guesses at 100 rows, on a list below some 50,000 it
            // scanned all of `deliveries` and `subscribers` instead, for
            // every batch (see `PG_RECORD`).
            Pool::Postgres(p) => {
                db::query_as(concat!(
                    "WITH picked AS (",
                    due_selection!(),
                    " FOR UPDATE SKIP LOCKED), claimed AS (UPDATE deliveries d SET lease_owner = $1, lease_until = $2, updated_at = $3 \
                     WHERE d.id = ANY(ARRAY(SELECT id FROM picked)) \
                     RETURNING d.id, d.issue_id, d.subscriber_id, d.attempts, d.created_at) \
                     SELECT d.id, d.issue_id, d.subscriber_id, s.email, s.name, s.status, s.token_salt, d.attempts, d.created_at \
                     FROM claimed d JOIN subscribers s ON s.id = d.subscriber_id \
                     WHERE s.id = ANY(ARRAY(SELECT subscriber_id FROM claimed)) ORDER BY d.id"
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
                let ids: Vec<i64> = db::query_scalar(concat!(
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
    /// one `delivery_attempts` row. `Sent` stores the Message-ID, the relay's queue
    /// id and the time (it does not end a run of soft bounces by itself: a
    /// relay accepts everything, see `bounces.rs`); `Bounced` fails the
    /// delivery and marks the subscriber bounced. Outcomes for unknown
    /// delivery ids are ignored, and so is one whose delivery no longer has
    /// its [`Outcome::attempts_before`] (recorded already, or attempted
    /// again since): writing a batch twice is safe.
    ///
    /// The whole batch travels as one JSON array bound to one parameter, so
    /// the statements are the same text whatever the batch size (prepared
    /// once, then cached) and their number does not grow with the batch. On
    /// SQLite the three statements also go in one call: every statement is a
    /// round trip to the connection's thread, and those round trips were
    /// most of what recording cost a fast send (see `benches/README.md`).
    /// On PostgreSQL they are one statement (data-modifying CTEs), one
    /// round trip and one commit.
    pub async fn record_outcomes(&self, outcomes: &[Outcome]) -> Result<(), StoreError> {
        if outcomes.is_empty() {
            return Ok(());
        }
        let span = tracing::debug_span!("record_outcomes", n = outcomes.len());
        async move {
            // One row per delivery and statement: `UPDATE … FROM` applies one
            // source row per target row, so a delivery that appears twice in
            // a batch (it cannot today: a settled or deferred delivery is not
            // claimed again within one batch's time) is written in a second
            // round rather than losing an attempt.
            let mut rest = outcomes;
            while !rest.is_empty() {
                let mut seen = std::collections::HashSet::with_capacity(rest.len());
                let take = rest
                    .iter()
                    .position(|o| !seen.insert(o.delivery_id))
                    .unwrap_or(rest.len());
                let (round, later) = rest.split_at(take);
                self.record_round(round).await?;
                rest = later;
            }
            tracing::debug!(n = outcomes.len(), "recorded outcomes");
            Ok(())
        }
        .instrument(span)
        .await
    }

    async fn record_round(&self, outcomes: &[Outcome]) -> Result<(), StoreError> {
        let rows: Vec<OutcomeRow<'_>> = outcomes.iter().map(OutcomeRow::from).collect();
        let json = serde_json::to_string(&rows).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        // When the subscribers of this batch's hard bounces were bounced.
        let bounced_at = outcomes
            .iter()
            .filter(|o| o.kind == OutcomeKind::Bounced)
            .map(|o| ms(o.at))
            .max();
        match &self.pool {
            Pool::Sqlite(p) => {
                let mut tx = p.begin_write().await?;
                db::query(SQLITE_RECORD)
                    .bind(&json)
                    .bind(bounced_at)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
            }
            Pool::Postgres(p) => {
                // One statement is one transaction.
                let _: i64 = db::query_scalar(PG_RECORD)
                    .bind(&json)
                    .bind(bounced_at)
                    .fetch_one(p)
                    .await?;
            }
        }
        Ok(())
    }

    /// Every attempt made at a delivery, oldest first: what the relay said
    /// each time, for an operator working out why a message went astray.
    pub async fn attempts(&self, delivery_id: i64) -> Result<Vec<AttemptRecord>, StoreError> {
        let rows: Vec<(i64, String, String)> = with_pool!(self, |p| {
            db::query_as(
                "SELECT attempted_at, reply, outcome FROM delivery_attempts \
                 WHERE delivery_id = $1 ORDER BY id",
            )
            .bind(delivery_id)
            .fetch_all(p)
            .await?
        });
        rows.into_iter()
            .map(|(at, reply, outcome)| {
                Ok(AttemptRecord {
                    at: from_ms(at)?,
                    reply,
                    outcome,
                })
            })
            .collect()
    }

    /// Gives back `worker`'s leases on deliveries it did not settle (on
    /// shutdown), so other workers may claim them at once. Returns how many.
    pub async fn release_leases(&self, worker: &str) -> Result<u64, StoreError> {
        let n = with_pool!(self, |p| {
            db::query(
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
            db::query_as(
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

    /// Why the issue `slug`'s deferred deliveries are waiting: each last
    /// reply (or connection error) with how many deliveries it holds back,
    /// the most common first, at most `limit` of them. A relay that cannot
    /// be reached gives one line, however long the list.
    pub async fn deferred_reasons(
        &self,
        slug: &str,
        limit: u32,
    ) -> Result<Vec<(String, u64)>, StoreError> {
        let rows: Vec<(Option<String>, i64)> = with_pool!(self, |p| {
            db::query_as(
                "SELECT d.last_reply, COUNT(*) FROM deliveries d JOIN issues i ON i.id = d.issue_id \
                 WHERE i.slug = $1 AND d.status = 'deferred' \
                 GROUP BY d.last_reply ORDER BY COUNT(*) DESC, d.last_reply LIMIT $2",
            )
            .bind(slug)
            .bind(i64::from(limit))
            .fetch_all(p)
            .await?
        });
        Ok(rows
            .into_iter()
            .map(|(reply, n)| (reply.unwrap_or_default(), count(n)))
            .collect())
    }

    /// Puts an issue's failed deliveries back in the queue, due `now`
    /// (deliveries of forgotten subscribers stay failed). Returns how many.
    pub async fn retry_failed(&self, issue_id: i64, now: DateTime<Utc>) -> Result<u64, StoreError> {
        let now = ms(now);
        let n = with_pool!(self, |p| {
            db::query(
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
            db::query_scalar(
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
}
