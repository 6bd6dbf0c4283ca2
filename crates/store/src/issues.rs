//! Issues: one row per slug, remembering what was queued.

use chrono::Utc;

use crate::connect::with_pool;
use crate::model::{IssueRow, ms};
use crate::{IssueRecord, Store, StoreError};

impl Store {
    /// Records an issue if its slug is new; returns the stored record either
    /// way. The caller compares `content_hash` to notice a changed file.
    pub async fn upsert_issue(
        &self,
        slug: &str,
        content_hash: &str,
        subject: &str,
    ) -> Result<IssueRecord, StoreError> {
        let now = ms(Utc::now());
        with_pool!(self, |p| {
            // DO NOTHING + read back: two `send`s of a new issue at once both
            // end up with the same row, the second one's hash ignored.
            sqlx::query(
                "INSERT INTO issues (slug, content_hash, subject, created_at) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (slug) DO NOTHING",
            )
            .bind(slug)
            .bind(content_hash)
            .bind(subject)
            .bind(now)
            .execute(p)
            .await?;
        });
        self.get_issue(slug)
            .await?
            .ok_or_else(|| StoreError::Corrupt(format!("issue {slug:?} vanished after insert")))
    }

    /// Replaces an issue's content hash and subject (the operator forced a
    /// changed file).
    pub async fn update_issue_hash(
        &self,
        id: i64,
        content_hash: &str,
        subject: &str,
    ) -> Result<(), StoreError> {
        with_pool!(self, |p| {
            sqlx::query("UPDATE issues SET content_hash = $2, subject = $3 WHERE id = $1")
                .bind(id)
                .bind(content_hash)
                .bind(subject)
                .execute(p)
                .await?;
        });
        Ok(())
    }

    /// The issue with this slug.
    pub async fn get_issue(&self, slug: &str) -> Result<Option<IssueRecord>, StoreError> {
        let row: Option<IssueRow> = with_pool!(self, |p| {
            sqlx::query_as(
                "SELECT id, slug, content_hash, subject, created_at FROM issues WHERE slug = $1",
            )
            .bind(slug)
            .fetch_optional(p)
            .await?
        });
        row.map(IssueRecord::try_from).transpose()
    }
}
