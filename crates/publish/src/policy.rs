//! The content-changed rule, in one place.
//!
//! An issue is named by its slug, and what was delivered cannot be
//! recalled. Publishing a slug again is therefore either a resumption (the
//! same content: only subscribers not yet served get it) or, when the file
//! changed, refused unless the operator explicitly allows the changed
//! version to go to those not yet served.

use chrono::{DateTime, Utc};
use letterpress_store::IssueRecord;

/// What publishing does, given what the store holds for the slug.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// The slug is new: record the issue and queue the audience.
    New,
    /// The same content was published before: queue only subscribers
    /// without a delivery of it (added since, or a run cut short).
    Resume,
    /// The content changed and the operator allowed it: the stored issue
    /// takes the new content, which goes to those not yet served.
    Replace,
}

/// The slug was published before from different content.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "issue {slug:?} was already sent from different content (first sent {}); \
     what was delivered cannot be recalled",
    first_sent.format("%Y-%m-%d %H:%M UTC")
)]
pub struct ContentChanged {
    /// The issue's slug.
    pub slug: String,
    /// When the slug was first published.
    pub first_sent: DateTime<Utc>,
}

/// Decides what publishing content hashing to `content_hash` does when the
/// store holds `existing` for its slug.
pub fn decide(
    existing: Option<&IssueRecord>,
    content_hash: &str,
    allow_changed: bool,
) -> Result<Action, ContentChanged> {
    match existing {
        None => Ok(Action::New),
        Some(e) if e.content_hash == content_hash => Ok(Action::Resume),
        Some(_) if allow_changed => Ok(Action::Replace),
        Some(e) => Err(ContentChanged {
            slug: e.slug.clone(),
            first_sent: e.created_at,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(hash: &str) -> IssueRecord {
        IssueRecord {
            id: 7,
            slug: "why-rust".into(),
            content_hash: hash.into(),
            subject: "Why Rust".into(),
            created_at: DateTime::from_timestamp(1_700_000_000, 0).expect("a valid time"),
        }
    }

    #[test]
    fn decides_by_what_is_stored_and_what_is_allowed() {
        let h1 = stored("h1");
        let refused = Err(ContentChanged {
            slug: "why-rust".into(),
            first_sent: h1.created_at,
        });
        // (stored, new hash, allow_changed) -> decision
        type Row<'a> = (
            Option<&'a IssueRecord>,
            &'a str,
            bool,
            Result<Action, ContentChanged>,
        );
        let table: [Row<'_>; 6] = [
            (None, "h1", false, Ok(Action::New)),
            (None, "h1", true, Ok(Action::New)),
            (Some(&h1), "h1", false, Ok(Action::Resume)),
            (Some(&h1), "h1", true, Ok(Action::Resume)),
            (Some(&h1), "h2", false, refused),
            (Some(&h1), "h2", true, Ok(Action::Replace)),
        ];
        for (existing, hash, allow, expected) in table {
            assert_eq!(
                decide(existing, hash, allow),
                expected,
                "stored {:?}, new {hash}, allow_changed {allow}",
                existing.map(|e| &e.content_hash)
            );
        }
    }

    #[test]
    fn a_refusal_says_when_the_slug_was_first_sent() {
        let err = decide(Some(&stored("h1")), "h2", false).expect_err("changed content");
        let message = err.to_string();
        assert!(message.contains("\"why-rust\""), "{message}");
        assert!(message.contains("different content"), "{message}");
        assert!(message.contains("2023-11-14 22:13 UTC"), "{message}");
    }
}
