//! The values that go in and out of the store, and the raw row shapes both
//! backends decode into.

use crate::db::types::Json;
use chrono::{DateTime, TimeZone, Utc};
use letterpress_core::{SubscriberEmail, SubscriberName, SubscriberStatus};
use serde_json::{Map, Value};

use crate::StoreError;

/// A subscriber to add or import.
#[derive(Debug, Clone, PartialEq)]
pub struct NewSubscriber {
    /// The address, as given.
    pub email: SubscriberEmail,
    /// Display name. `None` keeps an existing subscriber's name.
    pub name: Option<SubscriberName>,
    /// Tags. Empty keeps an existing subscriber's tags.
    pub tags: Vec<String>,
    /// Free-form attributes (the CSV's other columns). Empty keeps an
    /// existing subscriber's attributes.
    pub attributes: Map<String, Value>,
    /// An explicit status (e.g. the CSV's `status` column). `None` means
    /// `Active` for a new address and "keep" for an existing one.
    pub status: Option<SubscriberStatus>,
    /// Where the subscriber came from (`cli`, `import:list.csv`, `signup`…).
    pub source: String,
}

impl NewSubscriber {
    /// An active subscriber with no name, tags or attributes.
    pub fn new(email: SubscriberEmail, source: impl Into<String>) -> Self {
        Self {
            email,
            name: None,
            tags: Vec::new(),
            attributes: Map::new(),
            status: None,
            source: source.into(),
        }
    }
}

/// How adds and imports treat suppressed addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UpsertMode {
    /// Suppressed addresses (unsubscribed, bounced, complained, forgotten)
    /// are reported and left alone.
    #[default]
    Normal,
    /// The operator explicitly lifts suppression (`--resubscribe`).
    Resubscribe,
}

/// What [`Store::add_subscriber`](crate::Store::add_subscriber) did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddOutcome {
    /// A new subscriber with this id.
    Added(i64),
    /// An existing subscriber whose name, tags, attributes or status changed.
    Updated(i64),
    /// An existing subscriber, already exactly so.
    Unchanged(i64),
    /// The address is suppressed; nothing changed. `None` when the address
    /// was forgotten (only its hash is left).
    Suppressed(Option<i64>),
}

/// One parsed line of an import file.
#[derive(Debug, Clone)]
pub struct ImportRow {
    /// The line number in the file, for messages.
    pub line: u64,
    /// The parsed subscriber, or why the line was rejected.
    pub result: Result<NewSubscriber, String>,
}

/// What an import did (or, in a dry run, would do).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ImportSummary {
    /// New addresses.
    pub added: u64,
    /// Existing addresses whose name, tags, attributes or status changed.
    pub updated: u64,
    /// Existing addresses already so.
    pub unchanged: u64,
    /// Suppressed addresses left alone.
    pub suppressed: u64,
    /// Rejected lines: (line, reason), including later duplicates of an
    /// address within the file ("duplicate of line N").
    pub rejected: Vec<(u64, String)>,
}

/// What [`Store::create_pending`](crate::Store::create_pending) did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PendingOutcome {
    /// A new pending subscriber: send the confirmation.
    Created {
        /// Its id.
        id: i64,
    },
    /// Already subscribed and active; nothing changed.
    AlreadyActive {
        /// Its id.
        id: i64,
    },
    /// Already pending: the confirmation may be sent again.
    StillPending {
        /// Its id.
        id: i64,
    },
    /// Suppressed. With an id, the subscriber's own confirmation
    /// ([`Store::confirm`](crate::Store::confirm)) may bring it back; `None`
    /// means the address was forgotten and stays suppressed.
    Suppressed {
        /// The suppressed subscriber's id, if a row exists.
        id: Option<i64>,
    },
}

/// A stored subscriber.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Subscriber {
    /// Row id.
    pub id: i64,
    /// The address as first given.
    pub email: String,
    /// Display name.
    pub name: Option<String>,
    /// Where the subscriber stands.
    pub status: SubscriberStatus,
    /// Tags.
    pub tags: Vec<String>,
    /// Free-form attributes.
    pub attributes: Map<String, Value>,
    /// Where the subscriber came from.
    pub source: String,
    /// When the row was created.
    pub created_at: DateTime<Utc>,
    /// When the subscription was confirmed (or added as active).
    pub confirmed_at: Option<DateTime<Utc>>,
    /// When the subscriber became suppressed.
    pub unsubscribed_at: Option<DateTime<Utc>>,
}

/// The kinds of bounce report [`Store::record_bounce`](crate::Store::record_bounce)
/// and [`Store::record_bounce_event`](crate::Store::record_bounce_event) take.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BounceKind {
    /// The mailbox does not exist: bounced at once.
    Hard,
    /// Temporary: bounced after `soft_limit` in a row.
    Soft,
    /// A spam complaint: complained at once.
    Complaint,
    /// The recipient asked the provider to stop sending (a list-unsubscribe
    /// the provider handled, a subscription change): unsubscribed at once.
    UnsubscribeRequest,
}

impl BounceKind {
    /// Every kind, in the order reports and metrics list them.
    pub const ALL: [BounceKind; 4] = [
        BounceKind::Hard,
        BounceKind::Soft,
        BounceKind::Complaint,
        BounceKind::UnsubscribeRequest,
    ];

    /// The stored name: `hard`, `soft`, `complaint`, `unsubscribe`.
    pub fn as_str(self) -> &'static str {
        match self {
            BounceKind::Hard => "hard",
            BounceKind::Soft => "soft",
            BounceKind::Complaint => "complaint",
            BounceKind::UnsubscribeRequest => "unsubscribe",
        }
    }

    pub(crate) fn parse(s: &str) -> Result<BounceKind, StoreError> {
        BounceKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown bounce kind {s:?}")))
    }
}

/// How a bounce report names the message it is about, most precise first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Correlation {
    /// The delivery's id (from the VERP token of `delivery.return_path`).
    Delivery(i64),
    /// The Message-ID the message carried, with or without `<>`.
    MessageId(String),
    /// The relay's queue id from its 250 reply to DATA.
    RelayId(String),
    /// Only the recipient's address: the event is taken to be about the
    /// subscriber's latest sent delivery, if there is one.
    Address(String),
}

/// One bounce, complaint or unsubscribe request reported after the message
/// was accepted (by a provider's webhook, a DSN or an ARF report).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BounceEvent {
    /// What the report names the message by.
    pub find: Correlation,
    /// What happened.
    pub kind: BounceKind,
    /// The provider's reason or the Diagnostic-Code (stored cut to 1000
    /// characters).
    pub reason: Option<String>,
    /// The status code, e.g. `5.1.1`, or the provider's code.
    pub status: Option<String>,
    /// When the provider says it happened.
    pub occurred_at: DateTime<Utc>,
    /// Who reported it: `ses`, `postmark`, `mailgun`, `sendgrid`, `resend`,
    /// `dsn`, `arf` or `webhook`.
    pub source: &'static str,
    /// The provider's event id, or a hash of the report: an event with the
    /// same source and id is recorded once.
    pub event_id: String,
}

/// What [`Store::record_bounce_event`](crate::Store::record_bounce_event) did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct BounceOutcome {
    /// The event was recorded before (same source and event id): nothing changed.
    pub duplicate: bool,
    /// The delivery it was traced to.
    pub delivery_id: Option<i64>,
    /// Whether it was traced to a subscriber who still exists.
    pub subscriber_found: bool,
    /// Whether that subscriber is suppressed after this event (whether or
    /// not this event was what suppressed them).
    pub suppressed: bool,
}

/// Bounce events of one issue, for `letterpress status`.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct IssueBounces {
    /// The issue's slug.
    pub slug: String,
    /// Deliveries accepted by the relay and then reported bounced (hard or
    /// soft), each counted once.
    pub bounced_after_acceptance: u64,
    /// Deliveries reported as spam by their recipient.
    pub complaints: u64,
    /// Deliveries whose recipient asked the provider to unsubscribe them.
    pub unsubscribe_requests: u64,
}

/// A stored issue.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct IssueRecord {
    /// Row id.
    pub id: i64,
    /// The issue's slug.
    pub slug: String,
    /// Hash of the rendered content when first queued.
    pub content_hash: String,
    /// Subject line.
    pub subject: String,
    /// When the issue was first recorded.
    pub created_at: DateTime<Utc>,
}

/// A delivery leased to a worker by [`Store::claim_due`](crate::Store::claim_due).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    /// The delivery.
    pub delivery_id: i64,
    /// Its issue.
    pub issue_id: i64,
    /// Its subscriber.
    pub subscriber_id: i64,
    /// The subscriber's address.
    pub email: String,
    /// The subscriber's name.
    pub name: Option<String>,
    /// The subscriber's status now (the sender skips suppressed ones).
    pub subscriber_status: SubscriberStatus,
    /// The salt bound into the subscriber's unsubscribe token.
    pub token_salt: u64,
    /// Attempts made so far.
    pub attempts: u32,
    /// When the delivery was queued (for the give-up age).
    pub created_at: DateTime<Utc>,
}

/// The result of one delivery attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The delivery.
    pub delivery_id: i64,
    /// The attempts the delivery had when it was claimed for this one (its
    /// claim's [`Claim::attempts`]). An outcome is recorded only over that
    /// count, so it applies once: written again (a retry after a commit
    /// whose reply was lost with the connection) or after a later attempt
    /// was recorded, it changes nothing.
    pub attempts_before: u32,
    /// When the attempt finished.
    pub at: DateTime<Utc>,
    /// The server's reply (or the error), kept with the attempt.
    pub reply: String,
    /// What it means for the delivery.
    pub kind: OutcomeKind,
}

/// What an attempt means for its delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutcomeKind {
    /// Accepted by the server; settles the delivery.
    Sent {
        /// The Message-ID sent.
        message_id: String,
        /// The relay's queue id from its 250 reply, where it gave one.
        relay_id: Option<String>,
    },
    /// Temporary failure; try again then.
    Deferred {
        /// When to try again.
        next_attempt_at: DateTime<Utc>,
    },
    /// Permanent failure; settles the delivery.
    Failed,
    /// Permanent failure because the mailbox does not exist: settles the
    /// delivery and marks the subscriber bounced.
    Bounced,
    /// Not sent on purpose (e.g. the subscriber left meanwhile); settles it.
    Skipped,
}

impl OutcomeKind {
    pub(crate) fn name(&self) -> &'static str {
        match self {
            OutcomeKind::Sent { .. } => "sent",
            OutcomeKind::Deferred { .. } => "deferred",
            OutcomeKind::Failed => "failed",
            OutcomeKind::Bounced => "bounced",
            OutcomeKind::Skipped => "skipped",
        }
    }
}

/// One attempt at a delivery, as [`crate::Store::attempts`] returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptRecord {
    /// When the attempt finished.
    pub at: DateTime<Utc>,
    /// What the relay said (or the error).
    pub reply: String,
    /// `sent`, `deferred`, `failed`, `bounced` or `skipped`.
    pub outcome: String,
}

/// Delivery counts of one issue.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct IssueCounts {
    /// The issue's slug.
    pub slug: String,
    /// Every delivery of the issue.
    pub total: u64,
    /// Waiting for their first attempt, not leased.
    pub queued: u64,
    /// Waiting for a retry, not leased.
    pub deferred: u64,
    /// Leased to a worker right now.
    pub sending: u64,
    /// Sent.
    pub sent: u64,
    /// Failed for good.
    pub failed: u64,
    /// Skipped.
    pub skipped: u64,
}

// ---- conversions shared by the modules ----

/// Unix milliseconds of a time: the stored form of every time.
pub(crate) fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

pub(crate) fn from_ms(v: i64) -> Result<DateTime<Utc>, StoreError> {
    Utc.timestamp_millis_opt(v)
        .single()
        .ok_or_else(|| StoreError::Corrupt(format!("time {v} out of range")))
}

pub(crate) fn opt_from_ms(v: Option<i64>) -> Result<Option<DateTime<Utc>>, StoreError> {
    v.map(from_ms).transpose()
}

pub(crate) fn parse_status(s: &str) -> Result<SubscriberStatus, StoreError> {
    s.parse()
        .map_err(|e: letterpress_core::UnknownStatus| StoreError::Corrupt(e.to_string()))
}

pub(crate) fn count(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

/// Implements `db::FromRow` for a struct of named columns, on both
/// backends: each field is read from the column of the same name.
///
/// Written by hand because sqlx's derive needs its `macros` feature, which
/// brings in a second generation of the RustCrypto hashes (see
/// `migrate.rs`); for structs of plain fields this is all the derive does.
macro_rules! from_row {
    ($ty:ident { $($field:ident),+ $(,)? }) => {
        impl<'r> $crate::db::FromRow<'r, $crate::db::sqlite::SqliteRow> for $ty {
            fn from_row(row: &'r $crate::db::sqlite::SqliteRow) -> Result<Self, $crate::db::Error> {
                use $crate::db::Row as _;
                Ok(Self { $($field: row.try_get(stringify!($field))?),+ })
            }
        }
        impl<'r> $crate::db::FromRow<'r, $crate::db::postgres::PgRow> for $ty {
            fn from_row(row: &'r $crate::db::postgres::PgRow) -> Result<Self, $crate::db::Error> {
                use $crate::db::Row as _;
                Ok(Self { $($field: row.try_get(stringify!($field))?),+ })
            }
        }
    };
}
pub(crate) use from_row;

/// The columns of [`SubscriberRow`], in a SELECT list.
pub(crate) const SUBSCRIBER_COLUMNS: &str =
    "id, email, name, status, tags, attributes, source, created_at, confirmed_at, unsubscribed_at";

pub(crate) struct SubscriberRow {
    pub id: i64,
    pub email: String,
    pub name: Option<String>,
    pub status: String,
    pub tags: Json<Vec<String>>,
    pub attributes: Json<Map<String, Value>>,
    pub source: String,
    pub created_at: i64,
    pub confirmed_at: Option<i64>,
    pub unsubscribed_at: Option<i64>,
}

from_row!(SubscriberRow {
    id,
    email,
    name,
    status,
    tags,
    attributes,
    source,
    created_at,
    confirmed_at,
    unsubscribed_at
});

impl TryFrom<SubscriberRow> for Subscriber {
    type Error = StoreError;
    fn try_from(r: SubscriberRow) -> Result<Self, StoreError> {
        Ok(Subscriber {
            id: r.id,
            email: r.email,
            name: r.name,
            status: parse_status(&r.status)?,
            tags: r.tags.0,
            attributes: r.attributes.0,
            source: r.source,
            created_at: from_ms(r.created_at)?,
            confirmed_at: opt_from_ms(r.confirmed_at)?,
            unsubscribed_at: opt_from_ms(r.unsubscribed_at)?,
        })
    }
}

pub(crate) struct IssueRow {
    pub id: i64,
    pub slug: String,
    pub content_hash: String,
    pub subject: String,
    pub created_at: i64,
}

from_row!(IssueRow {
    id,
    slug,
    content_hash,
    subject,
    created_at
});

impl TryFrom<IssueRow> for IssueRecord {
    type Error = StoreError;
    fn try_from(r: IssueRow) -> Result<Self, StoreError> {
        Ok(IssueRecord {
            id: r.id,
            slug: r.slug,
            content_hash: r.content_hash,
            subject: r.subject,
            created_at: from_ms(r.created_at)?,
        })
    }
}

pub(crate) struct ClaimRow {
    pub id: i64,
    pub issue_id: i64,
    pub subscriber_id: i64,
    pub email: String,
    pub name: Option<String>,
    pub status: String,
    pub token_salt: i64,
    pub attempts: i64,
    pub created_at: i64,
}

from_row!(ClaimRow {
    id,
    issue_id,
    subscriber_id,
    email,
    name,
    status,
    token_salt,
    attempts,
    created_at
});

impl TryFrom<ClaimRow> for Claim {
    type Error = StoreError;
    fn try_from(r: ClaimRow) -> Result<Self, StoreError> {
        Ok(Claim {
            delivery_id: r.id,
            issue_id: r.issue_id,
            subscriber_id: r.subscriber_id,
            email: r.email,
            name: r.name,
            subscriber_status: parse_status(&r.status)?,
            token_salt: r.token_salt as u64,
            attempts: u32::try_from(r.attempts).unwrap_or(u32::MAX),
            created_at: from_ms(r.created_at)?,
        })
    }
}
