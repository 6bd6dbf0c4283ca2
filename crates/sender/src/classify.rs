//! What an SMTP reply (or the lack of one) means for a delivery.
//!
//! The rules follow what a mail administrator expects from a bulk sender:
//! a temporary failure is retried later, a mailbox that does not exist is
//! never tried again, and a server that says "slow down" is obeyed for the
//! whole transport rather than for one message.

use crate::smtp::EnhancedCode;

/// The decision taken on one attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// 2xx: the server took the message.
    Delivered,
    /// 4xx, network, TLS or timeout: try again later on the backoff schedule.
    Deferred,
    /// Like `Deferred`, and the server asked the sender to slow down
    /// (421, or an enhanced code 4.7.x such as greylisting or rate limits).
    DeferredSlowDown,
    /// The mailbox is gone (5.1.x, 5.2.1, or a plain 550/553 with no
    /// enhanced code): mark the subscriber bounced.
    HardBounce,
    /// Any other 5xx (policy, content, message too large): the delivery
    /// fails, the subscriber is not blamed.
    Failed,
}

/// Classifies a reply given its basic code (e.g. 550) and the enhanced
/// code in its text.
pub fn classify_reply(code: u16, enhanced: Option<EnhancedCode>) -> Verdict {
    match code / 100 {
        2 => Verdict::Delivered,
        4 => {
            let policy = enhanced.is_some_and(|e| e.class == 4 && e.subject == 7);
            if code == 421 || policy {
                Verdict::DeferredSlowDown
            } else {
                Verdict::Deferred
            }
        }
        5 => match enhanced {
            Some(e) if e.subject == 1 || (e.subject == 2 && e.detail == 1) => Verdict::HardBounce,
            Some(_) => Verdict::Failed,
            None if code == 550 || code == 553 => Verdict::HardBounce,
            None => Verdict::Failed,
        },
        // 1xx/3xx as a final reply is a broken server: retry later.
        _ => Verdict::Deferred,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn classify_reply(code: u16, text: &str) -> Verdict {
        super::classify_reply(code, EnhancedCode::find(text))
    }

    #[test]
    fn classifies_like_a_mail_administrator_would() {
        assert_eq!(classify_reply(250, "2.0.0 Ok: queued"), Verdict::Delivered);
        assert_eq!(classify_reply(450, "4.2.0 mailbox busy"), Verdict::Deferred);
        assert_eq!(classify_reply(451, "try later"), Verdict::Deferred);
        assert_eq!(
            classify_reply(421, "too many connections"),
            Verdict::DeferredSlowDown
        );
        assert_eq!(
            classify_reply(450, "4.7.1 greylisted"),
            Verdict::DeferredSlowDown
        );
        assert_eq!(
            classify_reply(550, "5.1.1 user unknown"),
            Verdict::HardBounce
        );
        assert_eq!(
            classify_reply(552, "5.2.1 mailbox disabled"),
            Verdict::HardBounce
        );
        assert_eq!(classify_reply(550, "no such user"), Verdict::HardBounce);
        assert_eq!(
            classify_reply(553, "mailbox name not allowed"),
            Verdict::HardBounce
        );
        assert_eq!(
            classify_reply(550, "5.7.1 message rejected as spam"),
            Verdict::Failed
        );
        assert_eq!(
            classify_reply(552, "5.3.4 message too big"),
            Verdict::Failed
        );
        assert_eq!(classify_reply(554, "transaction failed"), Verdict::Failed);
    }
}
