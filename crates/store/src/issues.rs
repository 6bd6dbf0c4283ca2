//! Issues: one row per slug, and publishing one, which records it and
//! queues it for the audience in a single transaction.

use chrono::{DateTime, Utc};

use crate::connect::{BeginWrite, Pool, with_pool};
use crate::db;
use crate::model::{IssueRow, ms};
use crate::{IssueRecord, Store, StoreError};

/// An issue as the store keeps it: its identity, what its content hashes
/// to, and the composed bodies as an opaque document (the store never
/// reads it; workers elsewhere send from it).
#[derive(Debug, Clone, Copy)]
pub struct IssueToPublish<'a> {
    /// The issue's slug, unique in the store.
    pub slug: &'a str,
    /// The hash of the issue's source, to notice a changed file later.
    pub content_hash: &'a str,
    /// The subject line.
    pub subject: &'a str,
    /// The stored form of the composed issue.
    pub body: &'a str,
}

/// Deliveries queued at once from which [`Store::publish_issue`] refreshes
/// PostgreSQL's statistics of the queue (fewer cannot mislead the planner
/// for long).
const ANALYZE_AFTER: u64 = 1_000;

/// What [`Store::publish_issue`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PublishOutcome {
    /// The issue is recorded with this content and queued for every active
    /// subscriber who had no delivery of it yet (`queued` of them).
    Queued {
        /// The issue's row id.
        issue_id: i64,
        /// Deliveries added by this publish.
        queued: u64,
    },
    /// The stored issue is no longer what the caller saw when it decided
    /// (another publish came first); nothing was written. Look again.
    Stale,
}

impl Store {
    /// Publishes an issue in one transaction: records it (new slug) or
    /// replaces its hash, subject and body (known slug), and queues it for
    /// every active subscriber without a delivery of it, in one `INSERT …
    /// SELECT … ON CONFLICT DO NOTHING`. Either all of that is committed or
    /// none of it: there is never an issue row whose deliveries were not
    /// queued, which a scheduler would take for "already sent".
    ///
    /// `seen` is the content hash the caller found stored for this slug
    /// when it decided to publish (`None`: no issue had the slug). The row
    /// is written only if it is still so; otherwise nothing is written and
    /// [`PublishOutcome::Stale`] is returned. Whether a changed issue may
    /// be published at all is the caller's policy, decided on what it saw;
    /// this check makes sure it was decided on what is there.
    pub async fn publish_issue(
        &self,
        issue: &IssueToPublish<'_>,
        seen: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<PublishOutcome, StoreError> {
        let now = ms(now);
        let outcome = with_pool!(self, |p| {
            // Holds the queue lock shared: no subscriber is deleted while
            // this queues the audience (see `BeginWrite::begin_enqueue`).
            let mut tx = p.begin_enqueue().await?;
            // Both statements test and write in one step, on the newest row
            // version: of two publishers racing for a slug, the second's
            // statement waits for the first's commit and then finds the
            // row changed (UPDATE) or present (INSERT … DO NOTHING).
            let id: Option<i64> = match seen {
                Some(hash) => {
                    db::query_scalar(
                        "UPDATE issues SET content_hash = $2, subject = $3, body = $4 \
                         WHERE slug = $1 AND content_hash = $5 RETURNING id",
                    )
                    .bind(issue.slug)
                    .bind(issue.content_hash)
                    .bind(issue.subject)
                    .bind(issue.body)
                    .bind(hash)
                    .fetch_optional(&mut *tx)
                    .await?
                }
                None => {
                    db::query_scalar(
                        "INSERT INTO issues (slug, content_hash, subject, body, created_at) \
                         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (slug) DO NOTHING RETURNING id",
                    )
                    .bind(issue.slug)
                    .bind(issue.content_hash)
                    .bind(issue.subject)
                    .bind(issue.body)
                    .bind(now)
                    .fetch_optional(&mut *tx)
                    .await?
                }
            };
            match id {
                None => PublishOutcome::Stale,
                Some(issue_id) => {
                    // A new issue has no deliveries yet: a plain INSERT
                    // skips the conflict check of every row (a third of the
                    // statement at a million). Should one exist after all,
                    // the unique key fails the statement and nothing is
                    // published. A changed issue keeps the deliveries it
                    // has and gains those of new subscribers.
                    let statement = if seen.is_some() {
                        // The WHERE clause also keeps SQLite's parser from
                        // reading ON CONFLICT as a join constraint of the SELECT.
                        "INSERT INTO deliveries (issue_id, subscriber_id, status, attempts, next_attempt_at, created_at, updated_at) \
                         SELECT $1, id, 'queued', 0, $2, $2, $2 FROM subscribers WHERE status = 'active' \
                         ON CONFLICT (issue_id, subscriber_id) DO NOTHING"
                    } else {
                        "INSERT INTO deliveries (issue_id, subscriber_id, status, attempts, next_attempt_at, created_at, updated_at) \
                         SELECT $1, id, 'queued', 0, $2, $2, $2 FROM subscribers WHERE status = 'active'"
                    };
                    let queued = db::query(statement)
                        .bind(issue_id)
                        .bind(now)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected();
                    tx.commit().await?;
                    PublishOutcome::Queued { issue_id, queued }
                }
            }
        });
        // PostgreSQL plans the claims of the queue from the table's
        // statistics, and autovacuum refreshes them only a minute or more
        // after a bulk insert: until then the planner believes the due
        // deliveries are a handful and sorts every one of them on each
        // claim (41 ms per claim of 500 at 20,000 queued, against 4 ms by
        // the `deliveries_due` index order; see `benches/README.md`).
        // The plans need only rough counts, so ANALYZE samples 3,000 rows
        // (statistics target 10) instead of 30,000: its cost is then small
        // whatever the list size. The issue is published by then: a
        // failure here only costs the faster plans.
        if let (Pool::Postgres(p), PublishOutcome::Queued { queued, .. }) = (&self.pool, &outcome)
            && *queued >= ANALYZE_AFTER
            && let Err(e) = analyze_deliveries(p).await
        {
            tracing::warn!(error = %e, "ANALYZE deliveries after queueing failed");
        }
        Ok(outcome)
    }

    /// The issue with this slug.
    pub async fn get_issue(&self, slug: &str) -> Result<Option<IssueRecord>, StoreError> {
        let row: Option<IssueRow> = with_pool!(self, |p| {
            db::query_as(
                "SELECT id, slug, content_hash, subject, created_at FROM issues WHERE slug = $1",
            )
            .bind(slug)
            .fetch_optional(p)
            .await?
        });
        row.map(IssueRecord::try_from).transpose()
    }
}

/// Refreshes PostgreSQL's statistics of `deliveries` from a small sample.
async fn analyze_deliveries(p: &db::postgres::PgPool) -> Result<(), StoreError> {
    let mut tx = p.begin().await?;
    db::query("SET LOCAL default_statistics_target = 10")
        .execute(&mut *tx)
        .await?;
    db::query("ANALYZE deliveries").execute(&mut *tx).await?;
    tx.commit().await?;
    Ok(())
}
