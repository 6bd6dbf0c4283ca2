//! Resend (`/webhooks/resend`), signed the Svix way: `svix-signature`
//! holds one or more `v1,<base64 HMAC-SHA256>` over
//! `{svix-id}.{svix-timestamp}.{body}` under the secret (`whsec_` and the
//! base64 key); any one matching is enough (a rotation signs with both).
//! The timestamp must be within five minutes, and an id is acted on once.
//! Events: `email.bounced` (bounce type Permanent → hard, else soft) and
//! `email.complained`.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use letterpress_store::{BounceKind, Correlation};
use serde_json::Value;
use sha2::Sha256;

use super::{
    Reported, duplicate, first_use, fresh, header, malformed, record, refused, rfc3339_or_now,
};
use crate::AppState;

/// `[webhooks.resend]`.
#[derive(Clone)]
pub struct ResendSettings {
    key: Vec<u8>,
}

/// Why `webhooks.resend` has no usable secret.
#[derive(Debug, thiserror::Error)]
#[error("the Resend signing secret is not whsec_ followed by base64")]
pub struct ResendSecretError;

impl ResendSettings {
    /// The signing secret as Resend shows it (`whsec_…`).
    pub fn new(secret: &str) -> Result<Self, ResendSecretError> {
        let b64 = secret
            .trim()
            .strip_prefix("whsec_")
            .ok_or(ResendSecretError)?;
        let key = STANDARD.decode(b64).map_err(|_| ResendSecretError)?;
        if key.is_empty() {
            return Err(ResendSecretError);
        }
        Ok(Self { key })
    }
}

/// Whether any `v1,` signature in `signatures` signs `id.timestamp.body`
/// and the timestamp is fresh at `now`. Constant-time per signature.
pub(crate) fn verify(
    settings: &ResendSettings,
    id: &str,
    timestamp: &str,
    body: &[u8],
    signatures: &str,
    now: i64,
) -> bool {
    if id.is_empty() || !fresh(timestamp, now) {
        return false;
    }
    signatures.split_whitespace().any(|s| {
        let Some(Ok(given)) = s.strip_prefix("v1,").map(|b| STANDARD.decode(b)) else {
            return false;
        };
        let Ok(mut mac) = <Hmac<Sha256> as KeyInit>::new_from_slice(&settings.key) else {
            return false;
        };
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.as_bytes());
        mac.update(b".");
        mac.update(body);
        mac.verify_slice(&given).is_ok()
    })
}

/// The event of a (verified) body, if it is one we act on; `id` is the
/// delivery's `svix-id`.
pub(crate) fn events(id: &str, body: &[u8]) -> Result<Vec<Reported>, String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    let data = &v["data"];
    let kind = match v["type"].as_str().unwrap_or("") {
        "email.bounced" => match data["bounce"]["type"].as_str() {
            Some("Permanent") | None => BounceKind::Hard,
            Some(_) => BounceKind::Soft,
        },
        "email.complained" => BounceKind::Complaint,
        _ => return Ok(Vec::new()),
    };
    let find = data["email_id"]
        .as_str()
        .map(|e| vec![Correlation::RelayId(e.to_string())])
        .unwrap_or_default();
    let address = match &data["to"] {
        Value::Array(a) => a.first().and_then(Value::as_str),
        Value::String(s) => Some(s.as_str()),
        _ => None,
    };
    Ok(vec![Reported {
        find,
        address: address.map(str::to_string),
        kind,
        reason: data["bounce"]["message"].as_str().map(str::to_string),
        status: data["bounce"]["subType"].as_str().map(str::to_string),
        occurred_at: rfc3339_or_now(v["created_at"].as_str()),
        event_id: id.to_string(),
    }])
}

/// `POST /webhooks/resend`.
pub(crate) async fn hook(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(settings) = &state.settings.providers.resend else {
        return refused();
    };
    let id = header(&headers, "svix-id");
    let now = chrono::Utc::now().timestamp();
    let (timestamp, signatures) = (
        header(&headers, "svix-timestamp"),
        header(&headers, "svix-signature"),
    );
    if !verify(settings, id, timestamp, &body, signatures, now) {
        tracing::warn!("resend: signature or timestamp refused");
        return refused();
    }
    match first_use(&state, &format!("resend {id}")).await {
        Ok(true) => {}
        Ok(false) => return duplicate(),
        Err(answer) => return answer,
    }
    match events(id, &body) {
        Ok(events) => record(&state, "resend", events).await,
        Err(e) => malformed(&e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sign(key: &[u8], id: &str, ts: &str, body: &[u8]) -> String {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key).unwrap();
        mac.update(format!("{id}.{ts}.").as_bytes());
        mac.update(body);
        format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
    }

    #[test]
    fn signatures() {
        let key = b"resend test key 0123456789";
        let s = ResendSettings::new(&format!("whsec_{}", STANDARD.encode(key))).unwrap();
        let now = 1_767_225_600;
        let ts = now.to_string();
        let body = br#"{"type":"email.bounced"}"#;
        let good = sign(key, "msg_1", &ts, body);
        assert!(verify(&s, "msg_1", &ts, body, &good, now));
        let several = format!("v1,AAAA v2,xyz {good}");
        assert!(
            verify(&s, "msg_1", &ts, body, &several, now),
            "any v1 signature"
        );
        for (what, id, t, b, sig, at) in [
            (
                "other id",
                "msg_2",
                ts.as_str(),
                &body[..],
                good.clone(),
                now,
            ),
            (
                "changed body",
                "msg_1",
                ts.as_str(),
                &br#"{"type":"email.bounced" }"#[..],
                good.clone(),
                now,
            ),
            (
                "stale",
                "msg_1",
                ts.as_str(),
                &body[..],
                good.clone(),
                now + 301,
            ),
            (
                "wrong key",
                "msg_1",
                ts.as_str(),
                &body[..],
                sign(b"other", "msg_1", &ts, body),
                now,
            ),
            (
                "not v1",
                "msg_1",
                ts.as_str(),
                &body[..],
                good.replace("v1,", "v2,"),
                now,
            ),
            ("none", "msg_1", ts.as_str(), &body[..], String::new(), now),
        ] {
            assert!(!verify(&s, id, t, b, &sig, at), "{what}");
        }
        assert!(ResendSettings::new("secret").is_err());
    }

    #[test]
    fn event_kinds() {
        let body = |t: &str, bounce: &str| {
            format!(
                r#"{{"type":"{t}","created_at":"2026-01-01T00:00:00Z","data":{{"email_id":"re-1","to":["ann@x.example"]{bounce}}}}}"#
            )
        };
        let hard = body(
            "email.bounced",
            r#","bounce":{"type":"Permanent","subType":"General","message":"no"}"#,
        );
        let soft = body("email.bounced", r#","bounce":{"type":"Transient"}"#);
        assert_eq!(
            events("i", hard.as_bytes()).unwrap()[0].kind,
            BounceKind::Hard
        );
        assert_eq!(
            events("i", soft.as_bytes()).unwrap()[0].kind,
            BounceKind::Soft
        );
        let c = &events("i", body("email.complained", "").as_bytes()).unwrap()[0];
        assert_eq!(
            (c.kind, &c.find, c.address.as_deref()),
            (
                BounceKind::Complaint,
                &vec![Correlation::RelayId("re-1".into())],
                Some("ann@x.example")
            )
        );
        assert!(
            events("i", body("email.delivered", "").as_bytes())
                .unwrap()
                .is_empty()
        );
    }
}
