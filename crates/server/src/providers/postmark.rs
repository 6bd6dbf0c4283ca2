//! Postmark (`/webhooks/postmark`): HTTP Basic credentials set on the hook
//! in Postmark (`https://USER:PASSWORD@host/webhooks/postmark`), compared in
//! constant time. Postmark does not sign bodies; the credentials over TLS
//! are what it offers. Record types: `Bounce` (HardBounce and the like →
//! hard; SoftBounce, Transient, DnsError → soft; SpamComplaint →
//! complaint), `SpamComplaint`, and `SubscriptionChange` with
//! `SuppressSending` (ManualSuppression → unsubscribe request).

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use letterpress_store::{BounceKind, Correlation};
use serde_json::Value;

use super::{Reported, body_hash, header, malformed, record, refused, rfc3339_or_now};
use crate::AppState;

/// `[webhooks.postmark]`.
#[derive(Clone)]
pub struct PostmarkSettings {
    /// `user:password`, as the Authorization header carries it decoded.
    credentials: Vec<u8>,
}

impl PostmarkSettings {
    /// The credentials the hook's URL carries.
    pub fn new(username: &str, password: &str) -> Self {
        Self {
            credentials: format!("{username}:{password}").into_bytes(),
        }
    }
}

/// Whether `authorization` is `Basic` with exactly these credentials.
pub(crate) fn authorized(settings: &PostmarkSettings, authorization: &str) -> bool {
    let Some(encoded) = authorization
        .strip_prefix("Basic ")
        .or_else(|| authorization.strip_prefix("basic "))
    else {
        return false;
    };
    let Ok(given) = STANDARD.decode(encoded.trim()) else {
        return false;
    };
    letterpress_signing::same_secret(&settings.credentials, &given)
}

/// What one Postmark webhook body reports (none for other record types).
pub(crate) fn events(body: &[u8]) -> Result<Vec<Reported>, String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    let record_type = v["RecordType"].as_str().unwrap_or("");
    let kind = match record_type {
        "Bounce" => match v["Type"].as_str().unwrap_or("") {
            "HardBounce" | "BadEmailAddress" | "ManuallyDeactivated" | "Blocked" => {
                BounceKind::Hard
            }
            "SoftBounce" | "Transient" | "DnsError" => BounceKind::Soft,
            "SpamComplaint" => BounceKind::Complaint,
            "Unsubscribe" => BounceKind::UnsubscribeRequest,
            _ => return Ok(Vec::new()),
        },
        "SpamComplaint" => BounceKind::Complaint,
        "SubscriptionChange" => {
            if v["SuppressSending"].as_bool() != Some(true) {
                return Ok(Vec::new());
            }
            match v["SuppressionReason"].as_str().unwrap_or("") {
                "HardBounce" => BounceKind::Hard,
                "SpamComplaint" => BounceKind::Complaint,
                "ManualSuppression" => BounceKind::UnsubscribeRequest,
                _ => return Ok(Vec::new()),
            }
        }
        _ => return Ok(Vec::new()),
    };
    let address = v["Email"]
        .as_str()
        .or_else(|| v["Recipient"].as_str())
        .map(str::to_string);
    let find = v["MessageID"]
        .as_str()
        .map(|id| vec![Correlation::RelayId(id.to_string())])
        .unwrap_or_default();
    let event_id = match &v["ID"] {
        Value::Number(n) => format!("{record_type}:{n}"),
        Value::String(s) => format!("{record_type}:{s}"),
        _ => body_hash(body),
    };
    let occurred = v["BouncedAt"].as_str().or_else(|| v["ChangedAt"].as_str());
    Ok(vec![Reported {
        find,
        address,
        kind,
        reason: v["Details"]
            .as_str()
            .or_else(|| v["Description"].as_str())
            .map(str::to_string),
        status: v["TypeCode"].as_u64().map(|c| c.to_string()),
        occurred_at: rfc3339_or_now(occurred),
        event_id,
    }])
}

/// `POST /webhooks/postmark`.
pub(crate) async fn hook(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(settings) = &state.settings.providers.postmark else {
        return refused();
    };
    if !authorized(settings, header(&headers, "authorization")) {
        tracing::warn!("postmark: wrong or missing credentials");
        return refused();
    }
    match events(&body) {
        Ok(events) => record(&state, "postmark", events).await,
        Err(e) => malformed(&e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials() {
        let s = PostmarkSettings::new("postmark", "s3cret");
        let basic = |c: &str| format!("Basic {}", STANDARD.encode(c));
        assert!(authorized(&s, &basic("postmark:s3cret")));
        for wrong in [
            "postmark:s3cre",
            "postmark:s3cret2",
            "Postmark:s3cret",
            ":",
            "",
        ] {
            assert!(!authorized(&s, &basic(wrong)), "{wrong}");
        }
        assert!(!authorized(&s, "Bearer x"));
        assert!(!authorized(&s, "Basic !!!"));
        assert!(!authorized(&s, ""));
    }

    #[test]
    fn record_types() {
        let bounce = |t: &str| {
            format!(
                r#"{{"RecordType":"Bounce","ID":42,"Type":"{t}","TypeCode":1,"MessageID":"pm-1",
                "Email":"ann@x.example","BouncedAt":"2026-01-01T00:00:00Z","Details":"550 no"}}"#
            )
        };
        for (t, kind) in [
            ("HardBounce", Some(BounceKind::Hard)),
            ("SoftBounce", Some(BounceKind::Soft)),
            ("SpamComplaint", Some(BounceKind::Complaint)),
            ("AutoResponder", None),
        ] {
            let got = events(bounce(t).as_bytes()).unwrap();
            assert_eq!(got.first().map(|e| e.kind), kind, "{t}");
        }
        let e = &events(bounce("HardBounce").as_bytes()).unwrap()[0];
        assert_eq!(e.find, vec![Correlation::RelayId("pm-1".into())]);
        assert_eq!(e.event_id, "Bounce:42");
        assert_eq!(e.address.as_deref(), Some("ann@x.example"));
        let change = br#"{"RecordType":"SubscriptionChange","MessageID":"pm-2","Recipient":"b@x.example",
            "SuppressSending":true,"SuppressionReason":"ManualSuppression","ChangedAt":"2026-01-01T00:00:00Z"}"#;
        let got = events(change).unwrap();
        assert_eq!(got[0].kind, BounceKind::UnsubscribeRequest);
        assert_eq!(got[0].event_id.len(), 64, "no ID: a hash of the body");
        let reactivated = String::from_utf8_lossy(change).replace("true", "false");
        assert!(events(reactivated.as_bytes()).unwrap().is_empty());
        assert!(events(br#"{"RecordType":"Open"}"#).unwrap().is_empty());
        assert!(events(b"[").is_err());
    }
}
