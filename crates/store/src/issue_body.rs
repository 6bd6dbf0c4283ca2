//! What a worker needs besides the queue: the composed issue it is sending
//! (kept as an opaque document the store never interprets), a subscriber's
//! status right before sending, and one issue's counts.

use crate::connect::with_pool;
use crate::{IssueCounts, Store, StoreError, SubscriberStatus};

impl Store {
    /// Keeps the composed issue's stored form (opaque to the store).
    pub async fn save_issue_body(&self, issue_id: i64, body: &str) -> Result<(), StoreError> {
        with_pool!(self, |p| {
            sqlx::query("UPDATE issues SET body = $2 WHERE id = $1")
                .bind(issue_id)
                .bind(body)
                .execute(p)
                .await?;
        });
        Ok(())
    }

    /// The stored form saved by [`Store::save_issue_body`], if any.
    pub async fn issue_body(&self, issue_id: i64) -> Result<Option<String>, StoreError> {
        let row: Option<(Option<String>,)> = with_pool!(self, |p| {
            sqlx::query_as("SELECT body FROM issues WHERE id = $1")
                .bind(issue_id)
                .fetch_optional(p)
                .await?
        });
        Ok(row.and_then(|(b,)| b))
    }

    /// A subscriber's status now (None when the row is gone). The worker
    /// asks right before each send, so an unsubscribe that arrived after
    /// the claim still wins.
    pub async fn subscriber_status(&self, id: i64) -> Result<Option<SubscriberStatus>, StoreError> {
        let row: Option<(String,)> = with_pool!(self, |p| {
            sqlx::query_as("SELECT status FROM subscribers WHERE id = $1")
                .bind(id)
                .fetch_optional(p)
                .await?
        });
        row.map(|(s,)| {
            s.parse::<SubscriberStatus>()
                .map_err(|e| StoreError::Corrupt(e.to_string()))
        })
        .transpose()
    }

    /// The counts of one issue, by id.
    pub async fn issue_counts_by_id(
        &self,
        issue_id: i64,
    ) -> Result<Option<IssueCounts>, StoreError> {
        let slug: Option<(String,)> = with_pool!(self, |p| {
            sqlx::query_as("SELECT slug FROM issues WHERE id = $1")
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
