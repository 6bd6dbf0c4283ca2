//! SendGrid (`/webhooks/sendgrid`): the Event Webhook's signed requests.
//! `X-Twilio-Email-Event-Webhook-Signature` is a base64 ECDSA P-256
//! signature (SHA-256, ASN.1 DER) over `X-Twilio-Email-Event-Webhook-Timestamp`
//! followed by the raw body, checked with the verification key SendGrid
//! shows (base64 DER SubjectPublicKeyInfo). The timestamp must be within
//! five minutes, and a signature is acted on once. The body is a JSON array
//! of events: `bounce` (type `blocked` → soft, else hard), `dropped`,
//! `spamreport`, `unsubscribe` and `group_unsubscribe`.

use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1, UnparsedPublicKey};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use letterpress_store::{BounceKind, Correlation};
use serde_json::Value;

use super::{
    Reported, duplicate, first_use, fresh, header, malformed, record, refused, unix_or_now,
};
use crate::AppState;

/// The header with the signature.
pub(crate) const SIGNATURE: &str = "x-twilio-email-event-webhook-signature";
/// The header with the Unix time signed.
pub(crate) const TIMESTAMP: &str = "x-twilio-email-event-webhook-timestamp";

/// `[webhooks.sendgrid]`.
#[derive(Clone)]
pub struct SendgridSettings {
    public_key: Vec<u8>,
}

/// Why `webhooks.sendgrid.public_key` cannot be used.
#[derive(Debug, thiserror::Error)]
#[error(
    "webhooks.sendgrid.public_key is not a base64 P-256 public key (the Event Webhook's verification key)"
)]
pub struct SendgridKeyError;

impl SendgridSettings {
    /// The verification key as SendGrid shows it: base64 of the DER
    /// SubjectPublicKeyInfo (PEM armour is accepted too).
    pub fn new(public_key: &str) -> Result<Self, SendgridKeyError> {
        let b64: String = public_key
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .collect::<String>()
            .split_whitespace()
            .collect();
        let der = STANDARD.decode(b64).map_err(|_| SendgridKeyError)?;
        // A signature check with the key parses it: an unusable key is
        // refused here rather than on every request.
        if aws_lc_rs::signature::ParsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, &der).is_err() {
            return Err(SendgridKeyError);
        }
        Ok(Self { public_key: der })
    }
}

/// Whether `signature` signs `timestamp` + `body` and the timestamp is
/// fresh at `now`.
pub(crate) fn verify(
    settings: &SendgridSettings,
    timestamp: &str,
    body: &[u8],
    signature: &str,
    now: i64,
) -> bool {
    let Ok(sig) = STANDARD.decode(signature.trim()) else {
        return false;
    };
    let mut signed = Vec::with_capacity(timestamp.len() + body.len());
    signed.extend_from_slice(timestamp.as_bytes());
    signed.extend_from_slice(body);
    UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, &settings.public_key)
        .verify(&signed, &sig)
        .is_ok()
        && fresh(timestamp, now)
}

/// The events of a (verified) body that we act on.
pub(crate) fn events(body: &[u8]) -> Result<Vec<Reported>, String> {
    let v: Vec<Value> = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for e in &v {
        let reason = e["reason"].as_str().unwrap_or("");
        let kind = match e["event"].as_str().unwrap_or("") {
            "bounce" if e["type"].as_str() == Some("blocked") => BounceKind::Soft,
            "bounce" => BounceKind::Hard,
            "dropped" => {
                let r = reason.to_ascii_lowercase();
                if r.contains("spam") {
                    BounceKind::Complaint
                } else if r.contains("unsubscribe") {
                    BounceKind::UnsubscribeRequest
                } else {
                    BounceKind::Hard
                }
            }
            "spamreport" => BounceKind::Complaint,
            "unsubscribe" | "group_unsubscribe" => BounceKind::UnsubscribeRequest,
            _ => continue,
        };
        let Some(id) = e["sg_event_id"].as_str() else {
            continue;
        };
        let mut find = Vec::new();
        // "<relay id>.filter…": the first part is the id of SendGrid's 250.
        if let Some(relay) = e["sg_message_id"]
            .as_str()
            .and_then(|m| m.split('.').next())
        {
            find.push(Correlation::RelayId(relay.to_string()));
        }
        if let Some(mid) = e["smtp-id"].as_str() {
            find.push(Correlation::MessageId(mid.to_string()));
        }
        out.push(Reported {
            find,
            address: e["email"].as_str().map(str::to_string),
            kind,
            reason: (!reason.is_empty()).then(|| reason.to_string()),
            status: e["status"].as_str().map(str::to_string),
            occurred_at: unix_or_now(e["timestamp"].as_f64()),
            event_id: id.to_string(),
        });
    }
    Ok(out)
}

/// `POST /webhooks/sendgrid`.
pub(crate) async fn hook(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(settings) = &state.settings.providers.sendgrid else {
        return refused();
    };
    let signature = header(&headers, SIGNATURE);
    let now = chrono::Utc::now().timestamp();
    if !verify(settings, header(&headers, TIMESTAMP), &body, signature, now) {
        tracing::warn!("sendgrid: signature or timestamp refused");
        return refused();
    }
    match first_use(&state, &format!("sendgrid {}", signature.trim())).await {
        Ok(true) => {}
        Ok(false) => return duplicate(),
        Err(answer) => return answer,
    }
    match events(&body) {
        Ok(events) => record(&state, "sendgrid", events).await,
        Err(e) => malformed(&e),
    }
}

#[cfg(test)]
mod tests {
    use aws_lc_rs::encoding::{AsDer as _, PublicKeyX509Der};
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair as _};

    use super::*;

    fn key() -> (EcdsaKeyPair, SendgridSettings) {
        let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_ASN1_SIGNING).unwrap();
        let spki: PublicKeyX509Der<'static> = pair.public_key().as_der().unwrap();
        let settings = SendgridSettings::new(&STANDARD.encode(spki.as_ref())).unwrap();
        (pair, settings)
    }

    fn sign(pair: &EcdsaKeyPair, ts: &str, body: &[u8]) -> String {
        let mut m = ts.as_bytes().to_vec();
        m.extend_from_slice(body);
        STANDARD.encode(pair.sign(&SystemRandom::new(), &m).unwrap().as_ref())
    }

    #[test]
    fn signatures() {
        let (pair, s) = key();
        let (_, other) = key();
        let now = 1_767_225_600;
        let ts = now.to_string();
        let body = br#"[{"event":"bounce"}]"#;
        let sig = sign(&pair, &ts, body);
        assert!(verify(&s, &ts, body, &sig, now));
        assert!(!verify(&other, &ts, body, &sig, now), "wrong key");
        assert!(
            !verify(&s, &ts, br#"[{"event":"bounce "}]"#, &sig, now),
            "changed body"
        );
        assert!(
            !verify(&s, &(now + 1).to_string(), body, &sig, now),
            "changed timestamp"
        );
        assert!(!verify(&s, &ts, body, &sig, now + 301), "stale");
        assert!(!verify(&s, &ts, body, "", now), "no signature");
        assert!(SendgridSettings::new("bm90IGEga2V5").is_err());
    }

    #[test]
    fn event_kinds() {
        let body = br#"[
          {"event":"bounce","type":"bounce","email":"a@x.example","sg_event_id":"e1","sg_message_id":"Rly1.filter0001","smtp-id":"<m1@x>","status":"5.1.1","reason":"550 no","timestamp":1767225600},
          {"event":"bounce","type":"blocked","email":"b@x.example","sg_event_id":"e2"},
          {"event":"dropped","reason":"Spam Reporting Address","email":"c@x.example","sg_event_id":"e3"},
          {"event":"dropped","reason":"Bounced Address","email":"c@x.example","sg_event_id":"e4"},
          {"event":"spamreport","email":"d@x.example","sg_event_id":"e5"},
          {"event":"group_unsubscribe","email":"e@x.example","sg_event_id":"e6"},
          {"event":"delivered","email":"f@x.example","sg_event_id":"e7"},
          {"event":"open","email":"f@x.example","sg_event_id":"e8"}
        ]"#;
        let got = events(body).unwrap();
        let kinds: Vec<BounceKind> = got.iter().map(|e| e.kind).collect();
        use BounceKind::*;
        assert_eq!(
            kinds,
            [Hard, Soft, Complaint, Hard, Complaint, UnsubscribeRequest]
        );
        assert_eq!(
            got[0].find,
            vec![
                Correlation::RelayId("Rly1".into()),
                Correlation::MessageId("<m1@x>".into())
            ]
        );
        assert!(events(b"{}").is_err());
    }
}
