//! Bounce and complaint reports read from raw mail, as they arrive in a
//! bounce mailbox: RFC 3464 delivery status notifications (DSNs), RFC 5965
//! feedback reports (ARF, the feedback loops of Yahoo and others), and
//! everything else (auto-replies, vacation notices, human replies), which is
//! [`Report::NotABounce`].
//!
//! Pure: [`parse`] takes bytes and returns what they say; [`policy`] says
//! what that means (hard, soft, complaint or nothing); [`Report::findings`]
//! joins the two into the events worth recording, each with an idempotency
//! key. Finding the delivery a finding is about, and recording it, is the
//! caller's.
//!
//! MIME is parsed by mail-parser; the report bodies by [`fields`], here.
//! Work is bounded on any input: a message over [`Limits::max_bytes`] or
//! with more than [`Limits::max_parts`] MIME parts is not parsed further,
//! and the field parser keeps a bounded number of groups, fields and bytes.

mod fields;
pub mod policy;
mod status;

use mail_parser::{Message, MessageParser, MimeHeaders, PartType};
use sha2::{Digest, Sha256};

pub use policy::Verdict;
pub use status::{Action, Status};

/// How much of a message is looked at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Larger messages are not parsed ([`NotABounce::TooLarge`]).
    pub max_bytes: usize,
    /// Messages with more MIME parts, nested ones included, are not read
    /// further ([`NotABounce::TooManyParts`]).
    pub max_parts: usize,
}

impl Default for Limits {
    /// 10 MiB and 100 parts: a DSN returning a whole newsletter with its
    /// images fits; a report needs three parts.
    fn default() -> Self {
        Limits {
            max_bytes: 10 * 1024 * 1024,
            max_parts: 100,
        }
    }
}

/// A message as read: the report it is (or is not) and the addresses it
/// was delivered to, where a VERP return path shows up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Parsed {
    /// What the message reports.
    pub report: Report,
    /// Addresses that may be the VERP envelope sender the bounce was sent
    /// back to, in the order to try them: `Delivered-To`, `X-Original-To`,
    /// `Envelope-To`, `To` of the message itself, then the returned
    /// message's `Return-Path` and a feedback report's `Original-Mail-From`.
    pub verp_candidates: Vec<String>,
    /// The message's `Date`, as Unix seconds, when it has a readable one.
    pub date: Option<i64>,
}

/// What a message reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Report {
    /// A delivery status notification (RFC 3464).
    Dsn(Dsn),
    /// A feedback report (RFC 5965).
    Arf(Arf),
    /// Anything else, and why it is not a report.
    NotABounce(NotABounce),
}

/// A delivery status notification: `multipart/report;
/// report-type=delivery-status`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Dsn {
    /// `Reporting-MTA` of the per-message group, without its type.
    pub reporting_mta: Option<String>,
    /// One block per recipient, in order.
    pub recipients: Vec<DsnRecipient>,
    /// The returned message (`message/rfc822` or `text/rfc822-headers`).
    pub original: Option<Original>,
}

/// One per-recipient block of a DSN.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DsnRecipient {
    /// `Final-Recipient`, the address only.
    pub final_recipient: Option<String>,
    /// `Original-Recipient`, the address only.
    pub original_recipient: Option<String>,
    /// `Action`.
    pub action: Action,
    /// `Status`, or the status in `Diagnostic-Code` where that is missing
    /// or malformed.
    pub status: Option<Status>,
    /// `Diagnostic-Code`, without its type (`smtp;`), unfolded.
    pub diagnostic_code: Option<String>,
    /// `Remote-MTA`, without its type.
    pub remote_mta: Option<String>,
}

/// A feedback report: `multipart/report; report-type=feedback-report`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Arf {
    /// `Feedback-Type`.
    pub feedback_type: FeedbackType,
    /// `User-Agent` of the reporter.
    pub user_agent: Option<String>,
    /// `Original-Rcpt-To` addresses (optional in RFC 5965; most loops
    /// redact them).
    pub original_rcpt_to: Vec<String>,
    /// `Original-Mail-From`, the envelope sender of the reported message.
    pub original_mail_from: Option<String>,
    /// `Arrival-Date`, as written.
    pub arrival_date: Option<String>,
    /// The reported message (`message/rfc822` or `text/rfc822-headers`).
    pub original: Option<Original>,
}

/// `Feedback-Type` values (RFC 5965 §7.3, RFC 6591).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FeedbackType {
    /// Unsolicited mail: a spam complaint.
    Abuse,
    /// Fraud or phishing.
    Fraud,
    /// A virus.
    Virus,
    /// Marked as not spam.
    NotSpam,
    /// An authentication failure report (RFC 6591).
    AuthFailure,
    /// Anything else, lowercased (`other` included).
    Other(String),
}

impl FeedbackType {
    fn parse(value: &str) -> FeedbackType {
        let word = value
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_ascii_lowercase();
        match word.as_str() {
            "abuse" => FeedbackType::Abuse,
            "fraud" => FeedbackType::Fraud,
            "virus" => FeedbackType::Virus,
            "not-spam" => FeedbackType::NotSpam,
            "auth-failure" => FeedbackType::AuthFailure,
            _ => FeedbackType::Other(word),
        }
    }

    /// Its name in the report.
    pub fn as_str(&self) -> &str {
        match self {
            FeedbackType::Abuse => "abuse",
            FeedbackType::Fraud => "fraud",
            FeedbackType::Virus => "virus",
            FeedbackType::NotSpam => "not-spam",
            FeedbackType::AuthFailure => "auth-failure",
            FeedbackType::Other(other) => other,
        }
    }
}

/// What a report quotes of the message it is about.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Original {
    /// `Message-ID`, in the stored form `<local@domain>`.
    pub message_id: Option<String>,
    /// The URLs in `List-Unsubscribe`, brackets removed.
    pub list_unsubscribe: Vec<String>,
    /// `To` addresses.
    pub to: Vec<String>,
    /// `Return-Path`, the address only.
    pub return_path: Option<String>,
}

/// Why a message is not a report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NotABounce {
    /// Larger than [`Limits::max_bytes`].
    TooLarge(usize),
    /// More MIME parts than [`Limits::max_parts`].
    TooManyParts,
    /// No header could be read.
    Unreadable,
    /// An auto-reply (`Auto-Submitted: auto-replied`, vacation and
    /// out-of-office notices).
    AutoReply,
    /// A `multipart/report` of another type (`disposition-notification`,
    /// …), lowercased.
    OtherReportType(String),
    /// A report without its machine-readable part.
    NoReportPart,
    /// Anything else: a human reply, a newsletter, a plain-text bounce
    /// that follows no RFC.
    NotAReport,
}

impl std::fmt::Display for NotABounce {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NotABounce::TooLarge(bytes) => write!(f, "too large to read ({bytes} bytes)"),
            NotABounce::TooManyParts => f.write_str("too many MIME parts"),
            NotABounce::Unreadable => f.write_str("no readable header"),
            NotABounce::AutoReply => f.write_str("an auto-reply"),
            NotABounce::OtherReportType(t) => write!(f, "a report of type {t}"),
            NotABounce::NoReportPart => f.write_str("a report without its status part"),
            NotABounce::NotAReport => f.write_str("not a delivery or feedback report"),
        }
    }
}

/// An event worth recording: one failed DSN recipient or one complaint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    /// Hard, soft or complaint (never [`Verdict::Ignore`]).
    pub verdict: Verdict,
    /// `"dsn"` or `"arf"`.
    pub source: &'static str,
    /// The address the report is about: `Final-Recipient` (else
    /// `Original-Recipient`), or `Original-Rcpt-To` (else the reported
    /// message's `To`).
    pub recipient: Option<String>,
    /// The reported message's Message-ID, stored form.
    pub message_id: Option<String>,
    /// The enhanced status code (DSN) or the feedback type (ARF).
    pub status: Option<String>,
    /// The diagnostic text, if any.
    pub reason: Option<String>,
    /// The idempotency key: SHA-256 (hex) of source, recipient
    /// (lowercased), status and Message-ID, so the same report read twice,
    /// or sent twice, is the same event.
    pub event_id: String,
}

impl Report {
    /// The events in this report worth recording, per [`policy`].
    pub fn findings(&self) -> Vec<Finding> {
        match self {
            Report::Dsn(dsn) => {
                let message_id = dsn.original.as_ref().and_then(|o| o.message_id.clone());
                dsn.recipients
                    .iter()
                    .filter_map(|rcpt| {
                        let verdict = policy::dsn_verdict(rcpt);
                        if verdict == Verdict::Ignore {
                            return None;
                        }
                        let recipient = rcpt
                            .final_recipient
                            .clone()
                            .or_else(|| rcpt.original_recipient.clone());
                        let status = rcpt.status.map(|s| s.to_string());
                        Some(Finding {
                            verdict,
                            source: "dsn",
                            event_id: event_id(
                                "dsn",
                                recipient.as_deref(),
                                status.as_deref(),
                                message_id.as_deref(),
                            ),
                            recipient,
                            message_id: message_id.clone(),
                            status,
                            reason: rcpt.diagnostic_code.clone(),
                        })
                    })
                    .collect()
            }
            Report::Arf(arf) => {
                let verdict = policy::arf_verdict(&arf.feedback_type);
                if verdict == Verdict::Ignore {
                    return Vec::new();
                }
                let message_id = arf.original.as_ref().and_then(|o| o.message_id.clone());
                let recipient = arf
                    .original_rcpt_to
                    .first()
                    .cloned()
                    .or_else(|| arf.original.as_ref().and_then(|o| o.to.first().cloned()));
                let status = Some(arf.feedback_type.as_str().to_string());
                vec![Finding {
                    verdict,
                    source: "arf",
                    event_id: event_id(
                        "arf",
                        recipient.as_deref(),
                        status.as_deref(),
                        message_id.as_deref(),
                    ),
                    recipient,
                    message_id,
                    status,
                    reason: arf
                        .user_agent
                        .as_ref()
                        .map(|ua| format!("feedback report from {ua}")),
                }]
            }
            Report::NotABounce(_) => Vec::new(),
        }
    }
}

/// The idempotency key of an event: SHA-256 (hex) over its parts, each
/// length-prefixed so no two different tuples hash alike.
pub fn event_id(
    source: &str,
    recipient: Option<&str>,
    status: Option<&str>,
    message_id: Option<&str>,
) -> String {
    let mut hash = Sha256::new();
    let recipient = recipient.map(str::to_lowercase);
    for part in [Some(source), recipient.as_deref(), status, message_id] {
        let part = part.unwrap_or("");
        hash.update((part.len() as u64).to_be_bytes());
        hash.update(part.as_bytes());
    }
    hash.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// Reads one raw message (RFC 5322 bytes, as fetched over IMAP).
pub fn parse(raw: &[u8], limits: &Limits) -> Parsed {
    let not = |why| Parsed {
        report: Report::NotABounce(why),
        verp_candidates: Vec::new(),
        date: None,
    };
    if raw.len() > limits.max_bytes {
        return not(NotABounce::TooLarge(raw.len()));
    }
    let Some(message) = MessageParser::default().parse(raw) else {
        return not(NotABounce::Unreadable);
    };
    if count_parts(&message, limits.max_parts + 1) > limits.max_parts {
        return not(NotABounce::TooManyParts);
    }
    let mut verp_candidates = Vec::new();
    for name in ["Delivered-To", "X-Original-To", "Envelope-To", "To"] {
        for header in message
            .headers()
            .iter()
            .filter(|h| h.name().eq_ignore_ascii_case(name))
        {
            let raw_value = raw_header_text(raw, header.offset_start(), header.offset_end());
            push_unique(&mut verp_candidates, fields::addresses(&raw_value));
        }
    }
    let report = read_report(&message);
    let extra = match &report {
        Report::Dsn(dsn) => dsn
            .original
            .as_ref()
            .and_then(|o| o.return_path.clone())
            .into_iter()
            .collect(),
        Report::Arf(arf) => arf
            .original_mail_from
            .clone()
            .into_iter()
            .chain(arf.original.as_ref().and_then(|o| o.return_path.clone()))
            .collect(),
        Report::NotABounce(_) => Vec::new(),
    };
    push_unique(&mut verp_candidates, extra);
    Parsed {
        report,
        verp_candidates,
        date: message.date().map(|d| d.to_timestamp()),
    }
}

fn push_unique(list: &mut Vec<String>, more: Vec<String>) {
    for item in more {
        if list.len() < 32 && !list.iter().any(|have| have.eq_ignore_ascii_case(&item)) {
            list.push(item);
        }
    }
}

/// A header's value as written (mail-parser's offsets), lossily decoded.
fn raw_header_text(raw: &[u8], start: u32, end: u32) -> String {
    let (start, end) = (start as usize, end as usize);
    raw.get(start..end.min(raw.len()))
        .map(|bytes| String::from_utf8_lossy(bytes).into_owned())
        .unwrap_or_default()
}

/// Parts in the message, nested messages included, counted up to `stop`.
fn count_parts(message: &Message<'_>, stop: usize) -> usize {
    let mut count = 0;
    for part in &message.parts {
        count += 1;
        if count >= stop {
            return count;
        }
        if let PartType::Message(inner) = &part.body {
            count += count_parts(inner, stop - count);
            if count >= stop {
                return count;
            }
        }
    }
    count
}

fn read_report(message: &Message<'_>) -> Report {
    let root = message.root_part();
    let report_type = root.content_type().and_then(|ct| {
        (ct.ctype().eq_ignore_ascii_case("multipart")
            && ct
                .subtype()
                .is_some_and(|s| s.eq_ignore_ascii_case("report")))
        .then(|| {
            ct.attribute("report-type")
                .unwrap_or("")
                .to_ascii_lowercase()
        })
    });
    let Some(report_type) = report_type else {
        return Report::NotABounce(if is_auto_reply(message) {
            NotABounce::AutoReply
        } else {
            NotABounce::NotAReport
        });
    };
    let wanted = match report_type.as_str() {
        "delivery-status" => ["delivery-status", "global-delivery-status"],
        "feedback-report" => ["feedback-report", "feedback-report"],
        other => return Report::NotABounce(NotABounce::OtherReportType(other.to_string())),
    };
    let mut status_body = None;
    let mut original = None;
    for &id in root.sub_parts().unwrap_or(&[]) {
        let Some(part) = message.parts.get(id as usize) else {
            continue;
        };
        let Some(ct) = part.content_type() else {
            continue;
        };
        let (ctype, subtype) = (
            ct.ctype().to_ascii_lowercase(),
            ct.subtype().unwrap_or("").to_ascii_lowercase(),
        );
        match (ctype.as_str(), subtype.as_str()) {
            ("message", s) if wanted.contains(&s) && status_body.is_none() => {
                status_body = Some(String::from_utf8_lossy(part.contents()).into_owned());
            }
            ("message", "rfc822" | "global") if original.is_none() => {
                original = part.message().map(read_original);
            }
            ("text", "rfc822-headers") if original.is_none() => {
                original = MessageParser::default()
                    .parse_headers(part.contents())
                    .map(|headers| read_original(&headers));
            }
            _ => {}
        }
    }
    let Some(body) = status_body else {
        return Report::NotABounce(NotABounce::NoReportPart);
    };
    let groups = fields::parse_groups(&body);
    if report_type == "delivery-status" {
        Report::Dsn(read_dsn(&groups, original))
    } else {
        read_arf(&groups, original)
    }
}

fn read_dsn(groups: &[fields::Group], original: Option<Original>) -> Dsn {
    let mut dsn = Dsn {
        original,
        ..Dsn::default()
    };
    for group in groups {
        let is_recipient = group.get("final-recipient").is_some() || group.get("action").is_some();
        if !is_recipient {
            if dsn.reporting_mta.is_none() {
                dsn.reporting_mta = group
                    .get("reporting-mta")
                    .map(|v| fields::typed_value(v).to_string());
            }
            continue;
        }
        let diagnostic_code = group
            .get("diagnostic-code")
            .map(|v| fields::typed_value(v).to_string());
        let status = group
            .get("status")
            .and_then(Status::parse)
            .or_else(|| diagnostic_code.as_deref().and_then(Status::from_diagnostic));
        dsn.recipients.push(DsnRecipient {
            final_recipient: group.get("final-recipient").and_then(fields::address),
            original_recipient: group.get("original-recipient").and_then(fields::address),
            action: group
                .get("action")
                .map(Action::parse)
                .unwrap_or(Action::Other(String::new())),
            status,
            diagnostic_code,
            remote_mta: group
                .get("remote-mta")
                .map(|v| fields::typed_value(v).to_string()),
        });
    }
    dsn
}

fn read_arf(groups: &[fields::Group], original: Option<Original>) -> Report {
    // RFC 5965 has one group; some reporters put a blank line inside it.
    let get = |name: &str| groups.iter().find_map(|g| g.get(name));
    let Some(feedback_type) = get("feedback-type") else {
        return Report::NotABounce(NotABounce::NoReportPart);
    };
    Report::Arf(Arf {
        feedback_type: FeedbackType::parse(feedback_type),
        user_agent: get("user-agent").map(str::to_string),
        original_rcpt_to: groups
            .iter()
            .flat_map(|g| g.all("original-rcpt-to"))
            .filter_map(fields::address)
            .take(16)
            .collect(),
        original_mail_from: get("original-mail-from").and_then(fields::address),
        arrival_date: get("arrival-date")
            .or_else(|| get("received-date"))
            .map(str::to_string),
        original,
    })
}

fn read_original(message: &Message<'_>) -> Original {
    let raw = |name: &str| message.header_raw(name).map(str::to_string);
    Original {
        message_id: raw("Message-ID").as_deref().and_then(fields::message_id),
        list_unsubscribe: raw("List-Unsubscribe")
            .map(|v| {
                v.split(',')
                    .filter_map(|item| {
                        let item = item.trim();
                        let inner = item.strip_prefix('<')?.split('>').next()?;
                        Some(inner.trim().to_string())
                    })
                    .take(4)
                    .collect()
            })
            .unwrap_or_default(),
        to: raw("To").map(|v| fields::addresses(&v)).unwrap_or_default(),
        return_path: raw("Return-Path").as_deref().and_then(fields::address),
    }
}

/// Whether a message says it was sent by a program in answer to another
/// (RFC 3834 `Auto-Submitted`, the older `X-Autoreply` and `Precedence`
/// conventions, the usual subjects). Only the reason a non-report is given.
fn is_auto_reply(message: &Message<'_>) -> bool {
    let header = |name: &str| {
        message
            .header_raw(name)
            .map(|v| v.trim().to_ascii_lowercase())
    };
    if header("Auto-Submitted").is_some_and(|v| !v.starts_with("no")) {
        return true;
    }
    if header("X-Autoreply").is_some() || header("X-Autorespond").is_some() {
        return true;
    }
    if header("Precedence").is_some_and(|v| v == "auto_reply") {
        return true;
    }
    let subject = message.subject().unwrap_or("").to_lowercase();
    [
        "out of office",
        "automatic reply",
        "auto:",
        "autoreply",
        "vacation",
    ]
    .iter()
    .any(|s| subject.contains(s))
}
