//! What one attempt at a delivery comes to: the decision as a pure
//! function of what is known (the claim, what happened, the retry policy,
//! the time and the jitter), so that one table can show every rule.
//!
//! The rules follow what a mail administrator expects from a bulk sender:
//! a temporary failure is retried later, a mailbox that does not exist is
//! never tried again, a refusal that is not the mailbox's fault blames no
//! subscriber, and a server that says "slow down" is obeyed for the whole
//! transport rather than for one message.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::retry::RetryPolicy;
use crate::smtp::{EnhancedCode, Stage};

/// What one attempt came to, as far as the policy needs to know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Happened {
    /// The server replied `code` at `stage` (a 2xx at the end of data is
    /// an accepted message; anything else refused it).
    Reply {
        /// The command it answered.
        stage: Stage,
        /// The basic code, e.g. 550.
        code: u16,
        /// The enhanced code in the reply's text, if any.
        enhanced: Option<EnhancedCode>,
    },
    /// The file transport wrote the message to the outbox.
    Written,
    /// No reply: the connection failed.
    NoReply(NoReply),
    /// Refused here, for good, before anything of the message was sent:
    /// it cannot be built, or cannot go to this relay as it is.
    Refused,
    /// Something this side needs is missing for now: the content,
    /// the store's answer to the last look, the outbox folder.
    Unavailable,
    /// The subscriber is no longer active.
    Inactive,
}

/// How a connection failed without a reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoReply {
    /// Could not connect, or the connection closed or was reset.
    Network,
    /// The TLS handshake or the encrypted stream failed.
    Tls,
    /// The server did not answer within `delivery.timeout`.
    Timeout,
}

/// What a reply (or its absence) means, before the retry schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// 2xx: the server took the message (or the outbox has it).
    Delivered,
    /// 4xx, network, TLS or timeout: try again later on the backoff schedule.
    Deferred,
    /// Like `Deferred`, and the server asked the sender to slow down
    /// (421, or an enhanced code 4.7.x such as greylisting or rate limits).
    DeferredSlowDown,
    /// The mailbox is gone (5.1.x, 5.2.1, or a plain 550/553 at RCPT):
    /// mark the subscriber bounced.
    HardBounce,
    /// Any other 5xx (policy, content, message too large, our own sender
    /// refused), or a message that cannot go: the delivery fails, the
    /// subscriber is not blamed.
    Failed,
    /// The subscriber is no longer active: nothing was sent.
    Skipped,
}

/// What is known of the delivery before this attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Facts {
    /// Attempts made before this one.
    pub attempts: u32,
    /// When the delivery was queued.
    pub queued_at: DateTime<Utc>,
}

/// The outcome to record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decided {
    /// Accepted.
    Sent,
    /// Try again at `until`.
    Deferred {
        /// The next attempt, on the retry schedule.
        until: DateTime<Utc>,
    },
    /// Failed for good; the subscriber is not blamed.
    Failed,
    /// Would be deferred, but the next try would come after
    /// `delivery.retry.max_age`: failed for good after `attempts` attempts.
    GaveUp {
        /// Attempts made, this one included.
        attempts: u32,
    },
    /// A hard bounce: the subscriber becomes `bounced`.
    Bounced,
    /// Not sent: the subscriber is no longer active.
    Skipped,
}

/// The decision on one attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Decision {
    /// What to record.
    pub outcome: Decided,
    /// Whether to brake the whole transport (the server asked to slow down).
    pub brake: bool,
}

/// The decision on one attempt at a delivery described by `facts`: what
/// `happened`, under `retry` at `now`; `jitter` (in
/// [`RetryPolicy::JITTER`]) scales the retry delay.
pub(crate) fn decide(
    facts: Facts,
    happened: Happened,
    retry: &RetryPolicy,
    now: DateTime<Utc>,
    jitter: f64,
) -> Decision {
    let verdict = verdict(happened);
    let outcome = match verdict {
        Verdict::Delivered => Decided::Sent,
        Verdict::HardBounce => Decided::Bounced,
        Verdict::Failed => Decided::Failed,
        Verdict::Skipped => Decided::Skipped,
        Verdict::Deferred | Verdict::DeferredSlowDown => {
            let attempts = facts.attempts + 1;
            let delay = retry.delay_after(attempts, jitter);
            let age = (now - facts.queued_at).to_std().unwrap_or(Duration::ZERO);
            if retry.gives_up(age, delay) {
                Decided::GaveUp { attempts }
            } else {
                Decided::Deferred { until: now + delay }
            }
        }
    };
    Decision {
        outcome,
        // Even when giving up on this delivery: the server's request is
        // about every message that follows.
        brake: verdict == Verdict::DeferredSlowDown,
    }
}

/// What `happened` means, before the retry schedule.
pub(crate) fn verdict(happened: Happened) -> Verdict {
    match happened {
        Happened::Reply {
            stage,
            code,
            enhanced,
        } => reply_verdict(stage, code, enhanced),
        Happened::Written => Verdict::Delivered,
        // Network, TLS, dropped connection: the broken connection is
        // closed; retry later.
        Happened::NoReply(_) | Happened::Unavailable => Verdict::Deferred,
        Happened::Refused => Verdict::Failed,
        Happened::Inactive => Verdict::Skipped,
    }
}

fn reply_verdict(stage: Stage, code: u16, enhanced: Option<EnhancedCode>) -> Verdict {
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
        5 if names_the_mailbox(stage, code, enhanced) => Verdict::HardBounce,
        5 => Verdict::Failed,
        // 1xx/3xx as a final reply is a broken server: retry later.
        _ => Verdict::Deferred,
    }
}

/// Whether a 5xx says the recipient's mailbox does not exist (or is
/// disabled), which is what blames the subscriber.
///
/// The stage matters, where the old rule looked at codes only:
///
/// - Only a reply about the recipient can: at RCPT, or after it (DATA,
///   end of data), where each transaction has one recipient, so a mailbox
///   code there can only be about it (some servers check mailboxes after
///   the message, and say so with 5.1.1). At MAIL FROM or while setting up
///   the session, the refusal is about us: a 553 5.1.8 there means our
///   envelope sender's domain is refused, and bouncing the list for it
///   would wipe the list.
/// - A code without an enhanced code blames the mailbox only at RCPT:
///   550 and 553 there are "no such user" / "mailbox name not allowed".
///   A bare 550 at the end of data is the server refusing the message
///   (content, policy) as often as the mailbox, so it fails the delivery
///   without blaming anyone.
/// - 5.1.7 and 5.1.8 are the *sender's* address (RFC 3463) even when
///   they come at RCPT (Postfix delays sender checks to RCPT by
///   default), so they never blame the subscriber.
/// - 5.2.2 (mailbox full) is not a bounce: a full mailbox may empty, and
///   the subscriber still exists.
fn names_the_mailbox(stage: Stage, code: u16, enhanced: Option<EnhancedCode>) -> bool {
    let about_recipient = matches!(stage, Stage::Rcpt | Stage::Data | Stage::EndOfData);
    match enhanced {
        Some(e) if e.subject == 1 && matches!(e.detail, 7 | 8) => false,
        Some(e) => about_recipient && (e.subject == 1 || (e.subject == 2 && e.detail == 1)),
        None => stage == Stage::Rcpt && matches!(code, 550 | 553),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use Stage::*;

    const MINUTE: Duration = Duration::from_secs(60);

    /// The outcome kinds of the table, with the time of a deferral given
    /// as the delay from now (jitter 1.0, so the base delay).
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Expect {
        Sent,
        DeferredBy(Duration),
        Failed,
        GaveUp,
        Bounced,
        Skipped,
    }

    fn reply(stage: Stage, code: u16, text: &str) -> Happened {
        Happened::Reply {
            stage,
            code,
            enhanced: EnhancedCode::find(text),
        }
    }

    #[test]
    fn every_reply_class_the_contract_names() {
        let retry = RetryPolicy::default(); // 5 min, doubling, 4 h cap, 4 days
        let now = DateTime::parse_from_rfc3339("2026-03-01T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let fresh = Facts {
            attempts: 0,
            queued_at: now,
        };
        let third = Facts {
            attempts: 2,
            queued_at: now - chrono::Duration::hours(1),
        };
        // Queued 3 days 23 hours ago: the next try (4 h after the 8th)
        // would come after the 4 days.
        let old = Facts {
            attempts: 7,
            queued_at: now - chrono::Duration::hours(4 * 24 - 1),
        };
        use Expect::*;
        let first_retry = DeferredBy(5 * MINUTE);
        #[rustfmt::skip]
        let table: &[(&str, Facts, Happened, Expect, bool)] = &[
            // what happened                          facts   reply                                               outcome       brake
            ("2xx at end of data",                    fresh, reply(EndOfData, 250, "2.0.0 Ok: queued"),             Sent,         false),
            ("file written",                          fresh, Happened::Written,                                     Sent,         false),
            ("421 at RCPT",                           fresh, reply(Rcpt, 421, "4.7.0 slow down"),                   first_retry,  true),
            ("421 at MAIL (a reused connection)",     fresh, reply(Mail, 421, "too many connections"),              first_retry,  true),
            ("421 greeting",                          fresh, reply(Session, 421, "busy, come back later"),          first_retry,  true),
            ("4.7.x greylisting at RCPT",             fresh, reply(Rcpt, 450, "4.7.1 greylisted"),                  first_retry,  true),
            ("4.7.x rate limit at end of data",       fresh, reply(EndOfData, 451, "4.7.0 rate limited"),           first_retry,  true),
            ("450 mailbox busy",                      fresh, reply(Rcpt, 450, "4.2.0 mailbox busy"),                first_retry,  false),
            ("451 try later",                         fresh, reply(Rcpt, 451, "try later"),                         first_retry,  false),
            ("451 at end of data",                    fresh, reply(EndOfData, 451, "4.3.0 local error"),            first_retry,  false),
            ("452 insufficient storage",              fresh, reply(Rcpt, 452, "4.3.1 insufficient storage"),       first_retry,  false),
            ("third 451: doubled twice",              third, reply(Rcpt, 451, "4.3.0 try later"),                   DeferredBy(20 * MINUTE), false),
            ("5.1.1 at RCPT",                         fresh, reply(Rcpt, 550, "5.1.1 user unknown"),                Bounced,      false),
            ("5.1.10 at RCPT (null MX)",              fresh, reply(Rcpt, 556, "5.1.10 domain takes no mail"),       Bounced,      false),
            ("5.1.1 at end of data",                  fresh, reply(EndOfData, 550, "5.1.1 user unknown"),           Bounced,      false),
            ("5.1.1 at MAIL: our sender",             fresh, reply(Mail, 550, "5.1.1 sender unknown"),              Failed,       false),
            ("5.1.8 at RCPT: our sender's domain",    fresh, reply(Rcpt, 553, "5.1.8 sender address rejected"),     Failed,       false),
            ("5.2.1 mailbox disabled",                fresh, reply(Rcpt, 552, "5.2.1 mailbox disabled"),            Bounced,      false),
            ("5.2.2 mailbox full",                    fresh, reply(Rcpt, 552, "5.2.2 mailbox full"),                Failed,       false),
            ("550 at RCPT, no enhanced code",         fresh, reply(Rcpt, 550, "no such user"),                      Bounced,      false),
            ("553 at RCPT, no enhanced code",         fresh, reply(Rcpt, 553, "mailbox name not allowed"),          Bounced,      false),
            ("550 at MAIL, no enhanced code",         fresh, reply(Mail, 550, "sender refused"),                    Failed,       false),
            ("5.7.1 at RCPT: policy",                 fresh, reply(Rcpt, 550, "5.7.1 relaying denied"),             Failed,       false),
            ("5.7.1 spam at end of data",             fresh, reply(EndOfData, 554, "5.7.1 rejected as spam"),       Failed,       false),
            ("5.7.8 AUTH refused",                    fresh, reply(Session, 535, "5.7.8 bad credentials"),          Failed,       false),
            ("550 at end of data, no mailbox code",   fresh, reply(EndOfData, 550, "message refused"),              Failed,       false),
            ("554 at end of data",                    fresh, reply(EndOfData, 554, "transaction failed"),           Failed,       false),
            ("5.3.4 message too big at DATA",         fresh, reply(Data, 552, "5.3.4 message too big"),             Failed,       false),
            ("554 greeting",                          fresh, reply(Session, 554, "no service"),                     Failed,       false),
            ("354 as a final reply",                  fresh, reply(EndOfData, 354, "go ahead"),                     first_retry,  false),
            ("network",                               fresh, Happened::NoReply(NoReply::Network),                   first_retry,  false),
            ("TLS",                                   fresh, Happened::NoReply(NoReply::Tls),                       first_retry,  false),
            ("timeout",                               fresh, Happened::NoReply(NoReply::Timeout),                   first_retry,  false),
            ("refused here (no 8BITMIME, bare LF)",   fresh, Happened::Refused,                                     Failed,       false),
            ("issue content or store unavailable",    fresh, Happened::Unavailable,                                 first_retry,  false),
            ("subscriber no longer active",           fresh, Happened::Inactive,                                    Skipped,      false),
            ("too old: 451",                          old,   reply(Rcpt, 451, "4.3.0 try later"),                   GaveUp,       false),
            ("too old: network",                      old,   Happened::NoReply(NoReply::Network),                   GaveUp,       false),
            ("too old: 421 still brakes",             old,   reply(Rcpt, 421, "4.7.0 slow down"),                   GaveUp,       true),
            ("too old: a bounce is still a bounce",   old,   reply(Rcpt, 550, "5.1.1 user unknown"),                Bounced,      false),
        ];
        let mut wrong = Vec::new();
        for &(what, facts, happened, outcome, brake) in table {
            let got = decide(facts, happened, &retry, now, 1.0);
            let got_outcome = match got.outcome {
                Decided::Sent => Sent,
                Decided::Deferred { until } => DeferredBy((until - now).to_std().unwrap()),
                Decided::Failed => Failed,
                Decided::GaveUp { attempts } => {
                    assert_eq!(attempts, facts.attempts + 1, "{what}");
                    GaveUp
                }
                Decided::Bounced => Bounced,
                Decided::Skipped => Skipped,
            };
            if (got_outcome, got.brake) != (outcome, brake) {
                wrong.push(format!(
                    "{what}: expected {outcome:?}, brake {brake}; got {got_outcome:?}, brake {}",
                    got.brake
                ));
            }
        }
        assert!(wrong.is_empty(), "\n{}", wrong.join("\n"));
    }

    #[test]
    fn jitter_scales_the_delay_and_is_capped() {
        let retry = RetryPolicy::default();
        let now = Utc::now();
        let facts = Facts {
            attempts: 0,
            queued_at: now,
        };
        let network = Happened::NoReply(NoReply::Network);
        let until = |jitter| match decide(facts, network, &retry, now, jitter).outcome {
            Decided::Deferred { until } => (until - now).to_std().unwrap(),
            other => panic!("{other:?}"),
        };
        assert_eq!(until(0.8), 4 * MINUTE);
        assert_eq!(until(1.2), 6 * MINUTE);
    }
}
