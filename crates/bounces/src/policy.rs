//! What a report means for a subscriber: the bounce policy as a pure
//! function over a DSN recipient or a feedback type.
//!
//! | report | verdict |
//! |---|---|
//! | DSN `failed`, status 5.x.x | hard |
//! | DSN `failed`, status 4.x.x | soft |
//! | DSN `failed`, no status anywhere | soft (counted, suppressed only after the limit) |
//! | DSN `delayed` | ignored: the MTA is still trying and says so again if it gives up |
//! | DSN `delivered`, `relayed`, `expanded`, other | ignored |
//! | DSN `failed` with a 2.x.x status | ignored (contradictory) |
//! | ARF `abuse` | complaint |
//! | ARF `fraud`, `virus`, `not-spam`, `auth-failure`, `other`, unknown | ignored |

use crate::{Action, DsnRecipient, FeedbackType};

/// What one report block means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// A permanent failure: suppress at once.
    Hard,
    /// A transient failure: suppress after the soft-bounce limit.
    Soft,
    /// A spam complaint: suppress at once.
    Complaint,
    /// Nothing to record.
    Ignore,
}

/// The verdict on one DSN recipient block.
pub fn dsn_verdict(recipient: &DsnRecipient) -> Verdict {
    match (&recipient.action, recipient.status.map(|s| s.class)) {
        (Action::Failed, Some(5)) => Verdict::Hard,
        (Action::Failed, Some(4) | None) => Verdict::Soft,
        _ => Verdict::Ignore,
    }
}

/// The verdict on a feedback report's type.
pub fn arf_verdict(feedback_type: &FeedbackType) -> Verdict {
    match feedback_type {
        FeedbackType::Abuse => Verdict::Complaint,
        _ => Verdict::Ignore,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Status;

    #[test]
    fn the_policy_table() {
        let rcpt = |action: Action, status: Option<&str>| DsnRecipient {
            final_recipient: Some("a@example.com".into()),
            original_recipient: None,
            action,
            status: status.and_then(Status::parse),
            diagnostic_code: None,
            remote_mta: None,
        };
        let table = [
            (Action::Failed, Some("5.1.1"), Verdict::Hard),
            (Action::Failed, Some("5.7.1"), Verdict::Hard),
            (Action::Failed, Some("4.2.2"), Verdict::Soft),
            (Action::Failed, None, Verdict::Soft),
            (Action::Failed, Some("2.0.0"), Verdict::Ignore),
            (Action::Delayed, Some("4.4.7"), Verdict::Ignore),
            (Action::Delayed, None, Verdict::Ignore),
            (Action::Delivered, Some("2.0.0"), Verdict::Ignore),
            (Action::Relayed, Some("2.0.0"), Verdict::Ignore),
            (Action::Expanded, Some("2.0.0"), Verdict::Ignore),
            (Action::Other("x".into()), Some("5.1.1"), Verdict::Ignore),
        ];
        for (action, status, want) in table {
            let got = dsn_verdict(&rcpt(action.clone(), status));
            assert_eq!(got, want, "{action:?} {status:?}");
        }
        let arf = [
            (FeedbackType::Abuse, Verdict::Complaint),
            (FeedbackType::Fraud, Verdict::Ignore),
            (FeedbackType::Virus, Verdict::Ignore),
            (FeedbackType::NotSpam, Verdict::Ignore),
            (FeedbackType::AuthFailure, Verdict::Ignore),
            (FeedbackType::Other("other".into()), Verdict::Ignore),
        ];
        for (ft, want) in arf {
            assert_eq!(arf_verdict(&ft), want, "{ft:?}");
        }
    }
}
