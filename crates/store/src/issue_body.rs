//! What a worker needs besides the queue: the composed issue it is sending
//! (kept as an opaque document the store never interprets), the
//! subscribers' status right before sending, and one issue's counts.

use crate::connect::{Pool, with_pool};
use crate::db;
use crate::{IssueCounts, Store, StoreError, SubscriberStatus};

/// The statuses of the ids of one JSON array (`$1`), on SQLite: one
/// parameter whatever the number of ids, so the statement is prepared once
/// (SQLite has no array parameters). Also run by the status reader's own
/// connection (`status_reader.rs`).
pub(crate) const SQLITE_STATUSES: &str =
    "SELECT id, status FROM subscribers WHERE id IN (SELECT value FROM json_each($1))";

/// The statuses of the ids of one array (`$1`), on PostgreSQL. Through
/// `unnest` in an InitPlan, so that the plan does not depend on how many
/// ids there are: PostgreSQL then keeps one generic plan instead of
/// planning anew for every call (it did for `id = ANY($1)`, whose custom
/// plan, knowing the array's length, always looked cheaper). The status
/// gate runs it for every one or two messages; planning was a quarter of
/// its cost (pg_stat_statements, see `benches/README.md`). Also run by the
/// status reader's own connections (`status_reader.rs`).
pub(crate) const POSTGRES_STATUSES: &str =
    "SELECT id, status FROM subscribers WHERE id = ANY(ARRAY(SELECT unnest($1::bigint[])))";

/// [`POSTGRES_STATUSES`] for `ids` on `conn` (the pool, or the status
/// reader's own connection), as stored.
pub(crate) async fn postgres_statuses<'c, E>(
    conn: E,
    ids: &[i64],
) -> Result<Vec<(i64, String)>, db::Error>
where
    E: db::Executor<'c, Database = db::postgres::Postgres>,
{
    db::query_as(POSTGRES_STATUSES)
        .bind(ids)
        .fetch_all(conn)
        .await
}

/// `ids` as the JSON array [`SQLITE_STATUSES`] reads.
pub(crate) fn ids_as_json(ids: &[i64]) -> Result<String, StoreError> {
    serde_json::to_string(ids).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// Rows of `(id, status)` as stored, decoded.
pub(crate) fn decode_statuses(
    rows: Vec<(i64, String)>,
) -> Result<Vec<(i64, SubscriberStatus)>, StoreError> {
    rows.into_iter()
        .map(|(id, s)| {
            s.parse::<SubscriberStatus>()
                .map(|s| (id, s))
                .map_err(|e| StoreError::Corrupt(e.to_string()))
        })
        .collect()
}

impl Store {
    /// The stored form of an issue's composed bodies, as
    /// [`Store::publish_issue`] saved it (`None` for an unknown issue).
    pub async fn issue_body(&self, issue_id: i64) -> Result<Option<String>, StoreError> {
        let row: Option<(Option<String>,)> = with_pool!(self, |p| {
            db::query_as("SELECT body FROM issues WHERE id = $1")
                .bind(issue_id)
                .fetch_optional(p)
                .await?
        });
        Ok(row.and_then(|(b,)| b))
    }

    /// The status now of each of `ids` that still exists, in one query:
    /// the worker's last look before a message goes, made for every
    /// message waiting at that point at once.
    pub async fn subscriber_statuses(
        &self,
        ids: &[i64],
    ) -> Result<Vec<(i64, SubscriberStatus)>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let rows: Vec<(i64, String)> = match &self.pool {
            Pool::Sqlite(p) => {
                let json = ids_as_json(ids)?;
                db::query_as(SQLITE_STATUSES)
                    .bind(json)
                    .fetch_all(p)
                    .await?
            }
            Pool::Postgres(p) => postgres_statuses(p, ids).await?,
        };
        decode_statuses(rows)
    }

    /// The counts of one issue, by id.
    pub async fn issue_counts_by_id(
        &self,
        issue_id: i64,
    ) -> Result<Option<IssueCounts>, StoreError> {
        let slug: Option<(String,)> = with_pool!(self, |p| {
            db::query_as("SELECT slug FROM issues WHERE id = $1")
                .bind(issue_id)
                .fetch_optional(p)
                .await?
        });
        match slug {
            Some((slug,)) => Ok(self.issue_counts(Some(&slug)).await?.into_iter().next()),
            None => Ok(None),
        }
    }
}
