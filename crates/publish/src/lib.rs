//! Publishing an issue: the one use case by which an issue enters the
//! delivery queue, whoever asks for it (`letterpress send`, `send --due`,
//! the scheduler in `serve`).
//!
//! - [`policy`] decides, as a pure function of what the store holds for
//!   the slug, whether publishing is a first send, a resumption, the
//!   replacement of a changed file, or refused.
//! - [`plan`] and [`publish`] apply it: the plan is what an operator is
//!   asked to confirm, the publish is one store transaction
//!   ([`Store::publish_issue`]) that records the issue and queues its
//!   audience together, checked against what the plan saw.
//! - [`schedule`] is the cron scheduler: which issue files are due, and
//!   the loop that publishes them.
//!
//! This crate joins the composer (what an issue is) and the store (where it
//! goes); neither of those knows the other, and nothing HTTP is here.

#![warn(missing_docs)]

pub mod policy;
pub mod schedule;

use chrono::{DateTime, Utc};
use letterpress_composer::SendableIssue;
use letterpress_store::{IssueRecord, IssueToPublish, PublishOutcome, Store, StoreError};
use tracing::Instrument;

pub use policy::{Action, ContentChanged};

/// Why an issue was not published.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// The slug was sent before from different content (see [`policy`]).
    #[error(transparent)]
    ContentChanged(#[from] ContentChanged),
    /// Another publish of this slug changed the store after the plan was
    /// made; nothing was written.
    #[error(
        "issue {slug:?} was published by someone else meanwhile; nothing was queued, try again"
    )]
    Raced {
        /// The issue's slug.
        slug: String,
    },
    /// The store failed; nothing was written (the publish is one transaction).
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What publishing an issue will do, for the operator to confirm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// What the store holds for the slug now.
    pub existing: Option<IssueRecord>,
    /// What publishing does about it.
    pub action: Action,
    /// Active subscribers now (those already served are not sent again).
    pub audience: u64,
}

/// A published issue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Published {
    /// The issue's row id, which the deliveries name.
    pub issue_id: i64,
    /// Deliveries queued by this publish (0 when everyone was served).
    pub queued: u64,
    /// What was done.
    pub action: Action,
}

/// Decides what publishing `issue` would do, reading the store; refuses a
/// changed issue unless `allow_changed`.
pub async fn plan(
    store: &Store,
    issue: &SendableIssue,
    allow_changed: bool,
) -> Result<Plan, PublishError> {
    let existing = store.get_issue(&issue.slug).await?;
    let action = policy::decide(existing.as_ref(), &issue.content_hash, allow_changed)?;
    let audience = store.count_audience().await?;
    Ok(Plan {
        existing,
        action,
        audience,
    })
}

/// Publishes `issue` as `plan` decided: records it and queues every active
/// subscriber without a delivery of it, in one transaction. If the store
/// changed since the plan was made, nothing is written
/// ([`PublishError::Raced`]).
pub async fn publish(
    store: &Store,
    issue: &SendableIssue,
    plan: &Plan,
    now: DateTime<Utc>,
) -> Result<Published, PublishError> {
    let span = tracing::info_span!("publish", slug = %issue.slug, action = ?plan.action);
    async {
        let body = issue.to_stored();
        let record = IssueToPublish {
            slug: &issue.slug,
            content_hash: &issue.content_hash,
            subject: &issue.subject,
            body: &body,
        };
        let seen = plan.existing.as_ref().map(|e| e.content_hash.as_str());
        match store.publish_issue(&record, seen, now).await? {
            PublishOutcome::Queued { issue_id, queued } => {
                tracing::info!(queued, "issue published");
                Ok(Published {
                    issue_id,
                    queued,
                    action: plan.action,
                })
            }
            PublishOutcome::Stale => Err(PublishError::Raced {
                slug: issue.slug.clone(),
            }),
        }
    }
    .instrument(span)
    .await
}

/// [`plan`] then [`publish`] with no one to ask in between (`send --due`,
/// the scheduler). A publish that loses a race with another publisher of
/// the same slug plans again on what that one stored: a few tries always
/// settle, since every try after the first finds the slug recorded.
pub async fn publish_now(
    store: &Store,
    issue: &SendableIssue,
    allow_changed: bool,
) -> Result<Published, PublishError> {
    const TRIES: usize = 3;
    let mut tried = 0;
    loop {
        let plan = plan(store, issue, allow_changed).await?;
        match publish(store, issue, &plan, Utc::now()).await {
            Err(PublishError::Raced { .. }) if tried + 1 < TRIES => tried += 1,
            result => return result,
        }
    }
}
