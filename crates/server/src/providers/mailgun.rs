//! Mailgun (`/webhooks/mailgun`): `signature.signature` is the hex
//! HMAC-SHA256 of `signature.timestamp` followed by `signature.token`,
//! under the webhook signing key; the timestamp must be within five
//! minutes, and a token is acted on once. Events: `failed` (severity
//! permanent → hard, temporary → soft), `complained`, `unsubscribed`.

use axum::body::Bytes;
use axum::extract::State;
use axum::response::Response;
use hmac::{Hmac, KeyInit, Mac};
use letterpress_store::{BounceKind, Correlation};
use serde_json::Value;
use sha2::Sha256;

use super::{Reported, duplicate, first_use, fresh, malformed, record, refused, unix_or_now};
use crate::AppState;

/// `[webhooks.mailgun]`.
#[derive(Clone)]
pub struct MailgunSettings {
    signing_key: Vec<u8>,
}

impl MailgunSettings {
    /// The "HTTP webhook signing key" of the Mailgun account.
    pub fn new(signing_key: &[u8]) -> Self {
        Self {
            signing_key: signing_key.to_vec(),
        }
    }
}

/// Whether `signature` (hex) is the HMAC of `timestamp` + `token` and the
/// timestamp is fresh at `now` (Unix seconds). Constant-time.
pub(crate) fn verify(
    settings: &MailgunSettings,
    timestamp: &str,
    token: &str,
    signature: &str,
    now: i64,
) -> bool {
    let Ok(given) = hex::decode(signature.trim()) else {
        return false;
    };
    let Ok(mut mac) = <Hmac<Sha256> as KeyInit>::new_from_slice(&settings.signing_key) else {
        return false;
    };
    mac.update(timestamp.as_bytes());
    mac.update(token.as_bytes());
    !token.is_empty() && mac.verify_slice(&given).is_ok() && fresh(timestamp, now)
}

/// The event of a (verified) Mailgun body, if it is one we act on.
pub(crate) fn events(v: &Value) -> Vec<Reported> {
    let e = &v["event-data"];
    let kind = match (e["event"].as_str(), e["severity"].as_str()) {
        (Some("failed"), Some("permanent")) => BounceKind::Hard,
        (Some("failed"), _) => BounceKind::Soft,
        (Some("complained"), _) => BounceKind::Complaint,
        (Some("unsubscribed"), _) => BounceKind::UnsubscribeRequest,
        _ => return Vec::new(),
    };
    let Some(id) = e["id"].as_str() else {
        return Vec::new();
    };
    let find = e["message"]["headers"]["message-id"]
        .as_str()
        .map(|m| vec![Correlation::MessageId(m.to_string())])
        .unwrap_or_default();
    let status = &e["delivery-status"];
    vec![Reported {
        find,
        address: e["recipient"].as_str().map(str::to_string),
        kind,
        reason: status["description"]
            .as_str()
            .filter(|s| !s.is_empty())
            .or_else(|| status["message"].as_str())
            .or_else(|| e["reason"].as_str())
            .map(str::to_string),
        status: status["code"]
            .as_u64()
            .map(|c| c.to_string())
            .or_else(|| status["enhanced-code"].as_str().map(str::to_string)),
        occurred_at: unix_or_now(e["timestamp"].as_f64()),
        event_id: id.to_string(),
    }]
}

/// `POST /webhooks/mailgun`.
pub(crate) async fn hook(State(state): State<AppState>, body: Bytes) -> Response {
    let Some(settings) = &state.settings.providers.mailgun else {
        return refused();
    };
    // The signature travels inside the JSON, so the JSON is read first; no
    // field of it is believed before the signature checks out.
    let Ok(v) = serde_json::from_slice::<Value>(&body) else {
        return malformed("not JSON");
    };
    let s = &v["signature"];
    let (timestamp, token) = (
        s["timestamp"].as_str().unwrap_or(""),
        s["token"].as_str().unwrap_or(""),
    );
    let now = chrono::Utc::now().timestamp();
    if !verify(
        settings,
        timestamp,
        token,
        s["signature"].as_str().unwrap_or(""),
        now,
    ) {
        tracing::warn!("mailgun: signature or timestamp refused");
        return refused();
    }
    match first_use(&state, &format!("mailgun {token}")).await {
        Ok(true) => {}
        Ok(false) => return duplicate(),
        Err(answer) => return answer,
    }
    record(&state, "mailgun", events(&v)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sign(key: &[u8], timestamp: &str, token: &str) -> String {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key).unwrap();
        mac.update(timestamp.as_bytes());
        mac.update(token.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }

    #[test]
    fn signatures() {
        let s = MailgunSettings::new(b"key-123");
        let now = 1_767_225_600;
        let ts = now.to_string();
        let good = sign(b"key-123", &ts, "tok");
        assert!(verify(&s, &ts, "tok", &good, now));
        assert!(verify(&s, &ts, "tok", &good, now + 300));
        for (what, ts2, tok, sig, at) in [
            ("stale", ts.as_str(), "tok", good.clone(), now + 301),
            ("early", ts.as_str(), "tok", good.clone(), now - 301),
            ("other token", ts.as_str(), "tok2", good.clone(), now),
            (
                "wrong key",
                ts.as_str(),
                "tok",
                sign(b"key-124", &ts, "tok"),
                now,
            ),
            ("garbage", ts.as_str(), "tok", "zz".to_string(), now),
            (
                "empty token",
                ts.as_str(),
                "",
                sign(b"key-123", &ts, ""),
                now,
            ),
        ] {
            assert!(!verify(&s, ts2, tok, &sig, at), "{what}");
        }
    }

    #[test]
    fn event_kinds() {
        let body = |event: &str, severity: &str| {
            serde_json::json!({"event-data": {"event": event, "severity": severity, "id": "ev1",
                "timestamp": 1767225600.5, "recipient": "ann@x.example",
                "message": {"headers": {"message-id": "m1@x.example"}},
                "delivery-status": {"code": 550, "description": "no such user"}}})
        };
        for (event, severity, kind) in [
            ("failed", "permanent", Some(BounceKind::Hard)),
            ("failed", "temporary", Some(BounceKind::Soft)),
            ("complained", "", Some(BounceKind::Complaint)),
            ("unsubscribed", "", Some(BounceKind::UnsubscribeRequest)),
            ("delivered", "", None),
        ] {
            let got = events(&body(event, severity));
            assert_eq!(got.first().map(|e| e.kind), kind, "{event}");
        }
        let e = &events(&body("failed", "permanent"))[0];
        assert_eq!(e.find, vec![Correlation::MessageId("m1@x.example".into())]);
        assert_eq!(
            (e.status.as_deref(), e.reason.as_deref()),
            (Some("550"), Some("no such user"))
        );
    }
}
