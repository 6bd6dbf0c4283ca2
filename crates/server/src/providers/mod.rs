//! The relays' own bounce and complaint webhooks, each verified the way its
//! provider signs: `/webhooks/ses` (Amazon SNS message signatures),
//! `/webhooks/postmark` (HTTP Basic), `/webhooks/mailgun` (HMAC of
//! timestamp and token), `/webhooks/sendgrid` (ECDSA P-256) and
//! `/webhooks/resend` (Svix HMAC).
//!
//! Each provider's module holds pure functions (verification, parsing into
//! [`Reported`] events) with table tests; this module turns what they found
//! into [`BounceEvent`]s for [`Store::record_bounce_event`]. Rules shared by
//! every route:
//! - nothing is parsed before the request is verified; every refusal is a
//!   401 with the same words, so it tells an attacker nothing;
//! - a repeat (a provider's retry, a captured request replayed) is answered
//!   200 with `duplicate: true` and changes nothing: events are recorded
//!   once per (source, event id), and single-use tokens are remembered;
//! - unknown event types are acknowledged (200) and ignored;
//! - no answer says anything about an address (only how many events the
//!   request held);
//! - bodies over [`PROVIDER_BODY_LIMIT`] get 413.
//!
//! [`Store::record_bounce_event`]: letterpress_store::Store::record_bounce_event

pub(crate) mod mailgun;
pub(crate) mod postmark;
pub(crate) mod resend;
pub(crate) mod sendgrid;
pub(crate) mod ses;

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use letterpress_store::{BounceEvent, BounceKind, Correlation};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::AppState;

pub use mailgun::MailgunSettings;
pub use postmark::PostmarkSettings;
pub use resend::ResendSettings;
pub use sendgrid::SendgridSettings;
pub use ses::SesSettings;

/// Provider webhook bodies larger than this are refused with 413 (SendGrid
/// posts batches of up to about 768 KB).
pub const PROVIDER_BODY_LIMIT: usize = 1024 * 1024;

/// How far a signed timestamp may be from our clock (Mailgun, SendGrid,
/// Resend), either way.
pub(crate) const MAX_SKEW_SECS: i64 = 300;

/// The provider hooks that are configured; a route whose provider is `None`
/// answers 401.
#[derive(Clone, Default)]
pub struct ProviderSettings {
    /// `[webhooks.ses]`.
    pub ses: Option<SesSettings>,
    /// `[webhooks.postmark]`.
    pub postmark: Option<PostmarkSettings>,
    /// `[webhooks.mailgun]`.
    pub mailgun: Option<MailgunSettings>,
    /// `[webhooks.sendgrid]`.
    pub sendgrid: Option<SendgridSettings>,
    /// `[webhooks.resend]`.
    pub resend: Option<ResendSettings>,
}

/// One event as a provider reported it, before it is traced to a delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Reported {
    /// Ways the report names the message, tried in this order.
    pub(crate) find: Vec<Correlation>,
    /// The recipient, the last resort.
    pub(crate) address: Option<String>,
    pub(crate) kind: BounceKind,
    pub(crate) reason: Option<String>,
    pub(crate) status: Option<String>,
    pub(crate) occurred_at: DateTime<Utc>,
    pub(crate) event_id: String,
}

/// The one answer to a request that is not let in.
pub(crate) fn refused() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        Json(json!({ "error": "not verified" })),
    )
        .into_response()
}

/// The answer to a body that is not what the provider sends.
pub(crate) fn malformed(what: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(json!({ "error": format!("malformed body: {what}") })),
    )
        .into_response()
}

/// A verified request seen before (a single-use token or id): done already.
pub(crate) fn duplicate() -> Response {
    (
        StatusCode::OK,
        Json(json!({ "received": 0, "duplicate": true })),
    )
        .into_response()
}

/// Hex SHA-256 of a body: the event id of reports that carry none.
pub(crate) fn body_hash(body: &[u8]) -> String {
    hex::encode(Sha256::digest(body))
}

/// A time given as RFC 3339, or now when absent or unreadable.
pub(crate) fn rfc3339_or_now(s: Option<&str>) -> DateTime<Utc> {
    s.and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_else(Utc::now)
}

/// A time given as Unix seconds (possibly fractional), or now.
pub(crate) fn unix_or_now(secs: Option<f64>) -> DateTime<Utc> {
    secs.filter(|s| s.is_finite())
        .and_then(|s| DateTime::from_timestamp_millis((s * 1000.0) as i64))
        .unwrap_or_else(Utc::now)
}

/// Whether a signed Unix timestamp is within [`MAX_SKEW_SECS`] of `now`.
pub(crate) fn fresh(timestamp: &str, now: i64) -> bool {
    timestamp
        .trim()
        .parse::<i64>()
        .is_ok_and(|t| (now - t).abs() <= MAX_SKEW_SECS)
}

/// Remembers a single-use value (a token, a signature, an id) of a verified
/// request; `Ok(false)` when it was seen before, `Err` with the answer when
/// the store fails.
pub(crate) async fn first_use(state: &AppState, key: &str) -> Result<bool, Response> {
    state
        .store
        .first_sighting(key, Utc::now())
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "provider webhook: store");
            unavailable()
        })
}

fn unavailable() -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(json!({ "error": "database unavailable" })),
    )
        .into_response()
}

/// Traces each event to its delivery (the first of its correlations the
/// store knows, else its address) and records it. 200 with how many events
/// the request held; 503 when the store fails (the provider retries, and
/// what was recorded already is not recorded twice).
pub(crate) async fn record(
    state: &AppState,
    source: &'static str,
    events: Vec<Reported>,
) -> Response {
    let limit = state.settings.soft_bounce_limit;
    let mut fresh = 0u64;
    for r in &events {
        let mut find = None;
        for c in &r.find {
            match state.store.find_delivery(c).await {
                Ok(Some(id)) => {
                    find = Some(Correlation::Delivery(id));
                    break;
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::error!(error = %e, source, "provider webhook: store");
                    return unavailable();
                }
            }
        }
        let find = find
            .or_else(|| r.address.clone().map(Correlation::Address))
            .or_else(|| r.find.first().cloned());
        let Some(find) = find else {
            tracing::info!(
                source,
                "bounce event names no message and no address; ignored"
            );
            continue;
        };
        let event = BounceEvent {
            find,
            kind: r.kind,
            reason: r.reason.clone(),
            status: r.status.clone(),
            occurred_at: r.occurred_at,
            source,
            event_id: r.event_id.clone(),
        };
        match state.store.record_bounce_event(&event, limit).await {
            Ok(outcome) => {
                if !outcome.duplicate {
                    fresh += 1;
                    tracing::info!(
                        source,
                        kind = r.kind.as_str(),
                        delivery = ?outcome.delivery_id,
                        suppressed = outcome.suppressed,
                        "bounce event recorded"
                    );
                }
            }
            Err(e) => {
                tracing::error!(error = %e, source, "provider webhook: store");
                return unavailable();
            }
        }
    }
    let duplicate = !events.is_empty() && fresh == 0;
    (
        StatusCode::OK,
        Json(json!({ "received": events.len(), "duplicate": duplicate })),
    )
        .into_response()
}

/// `""` for a missing header, so that it fails verification like a wrong one.
pub(crate) fn header<'a>(headers: &'a axum::http::HeaderMap, name: &str) -> &'a str {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}
