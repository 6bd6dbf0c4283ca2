//! Amazon SES through SNS (`/webhooks/ses`).
//!
//! An SNS message is verified before anything in it is believed: its
//! `SigningCertURL` must be `https://sns.<region>.amazonaws.com/….pem`, the
//! certificate there (fetched once per URL and cached, or the pinned one of
//! `webhooks.ses.certificate_file`) must verify `Signature` over the
//! message's canonical string, with RSA-SHA1 for `SignatureVersion` 1 and
//! RSA-SHA256 for 2; `TopicArn` must be one of `webhooks.ses.topic_arns`;
//! `Timestamp` at most an hour old (SNS retries within that). Only then is
//! a `SubscriptionConfirmation` confirmed (a GET of its `SubscribeURL`,
//! which must be on an SNS host too) or a `Notification` read: SES `Bounce`
//! (Permanent → hard, Transient and Undetermined → soft) and `Complaint`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_lc_rs::signature::{self, UnparsedPublicKey};
use axum::body::Bytes;
use axum::extract::State;
use axum::response::Response;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Utc};
use letterpress_store::{BounceKind, Correlation};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject as _;
use serde::Deserialize;
use serde_json::Value;

use super::{Reported, malformed, record, refused, rfc3339_or_now};
use crate::AppState;

/// How old a signed SNS message may be.
const MAX_AGE_SECS: i64 = 3600;
/// How long fetching a certificate or confirming a subscription may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// `[webhooks.ses]`.
#[derive(Clone)]
pub struct SesSettings {
    topic_arns: Vec<String>,
    pinned: Option<Vec<u8>>,
    cache: Arc<Mutex<HashMap<String, Vec<u8>>>>,
}

/// Why `[webhooks.ses]` cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SesSettingsError {
    /// No topic is allowed: every message would be refused.
    #[error("webhooks.ses.topic_arns is empty: name the SNS topics SES publishes to")]
    NoTopics,
    /// The pinned certificate is not a PEM or DER X.509 certificate.
    #[error("webhooks.ses.certificate_file is not an X.509 certificate (PEM or DER)")]
    Certificate,
}

impl SesSettings {
    /// Messages of `topic_arns` only; `pinned` (PEM or DER) is the one
    /// signing certificate believed, instead of fetching the URL a message
    /// names (tests, hosts that may not reach AWS).
    pub fn new(topic_arns: Vec<String>, pinned: Option<&[u8]>) -> Result<Self, SesSettingsError> {
        if topic_arns.iter().all(|t| t.trim().is_empty()) {
            return Err(SesSettingsError::NoTopics);
        }
        let pinned = match pinned {
            None => None,
            Some(bytes) => {
                let der = certificate_der(bytes).ok_or(SesSettingsError::Certificate)?;
                public_key(&der).ok_or(SesSettingsError::Certificate)?;
                Some(der)
            }
        };
        Ok(Self {
            topic_arns: topic_arns
                .into_iter()
                .map(|t| t.trim().to_string())
                .collect(),
            pinned,
            cache: Arc::default(),
        })
    }

    /// The signing certificate (DER) at `url`: the pinned one, a cached one,
    /// or fetched (the URL was checked by [`sns_url`] before).
    async fn certificate(&self, url: &str) -> Option<Vec<u8>> {
        if let Some(p) = &self.pinned {
            return Some(p.clone());
        }
        if let Some(c) = self.cache.lock().ok()?.get(url) {
            return Some(c.clone());
        }
        let client = reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .ok()?;
        let response = client.get(url).send().await.ok()?;
        if !response.status().is_success() {
            tracing::warn!(status = %response.status(), "ses: signing certificate not fetched");
            return None;
        }
        let der = certificate_der(&response.bytes().await.ok()?)?;
        public_key(&der)?;
        if let Ok(mut cache) = self.cache.lock() {
            // A handful of certificates are in use at a time; a flood of
            // distinct (valid) URLs cannot grow the cache without bound.
            if cache.len() >= 64 {
                cache.clear();
            }
            cache.insert(url.to_string(), der.clone());
        }
        Some(der)
    }
}

/// An SNS message as posted (the fields the signature covers and the
/// signature itself).
#[derive(Debug, Deserialize)]
pub(crate) struct SnsMessage {
    #[serde(rename = "Type")]
    pub(crate) kind: String,
    #[serde(rename = "MessageId")]
    pub(crate) message_id: String,
    #[serde(rename = "TopicArn")]
    pub(crate) topic_arn: String,
    #[serde(rename = "Subject")]
    pub(crate) subject: Option<String>,
    #[serde(rename = "Message")]
    pub(crate) message: String,
    #[serde(rename = "Timestamp")]
    pub(crate) timestamp: String,
    #[serde(rename = "SignatureVersion")]
    pub(crate) signature_version: String,
    #[serde(rename = "Signature")]
    pub(crate) signature: String,
    #[serde(rename = "SigningCertURL")]
    pub(crate) signing_cert_url: String,
    #[serde(rename = "SubscribeURL")]
    pub(crate) subscribe_url: Option<String>,
    #[serde(rename = "Token")]
    pub(crate) token: Option<String>,
}

/// The canonical string SNS signs: `Name\nvalue\n` for each signed field,
/// in byte order of the names. `None` for a type SNS does not sign this way
/// or a confirmation without its URL and token.
pub(crate) fn string_to_sign(m: &SnsMessage) -> Option<String> {
    let mut fields: Vec<(&str, &str)> = vec![("Message", &m.message), ("MessageId", &m.message_id)];
    match m.kind.as_str() {
        "Notification" => {
            if let Some(subject) = &m.subject {
                fields.push(("Subject", subject));
            }
            fields.push(("Timestamp", &m.timestamp));
        }
        "SubscriptionConfirmation" | "UnsubscribeConfirmation" => {
            fields.push(("SubscribeURL", m.subscribe_url.as_deref()?));
            fields.push(("Timestamp", &m.timestamp));
            fields.push(("Token", m.token.as_deref()?));
        }
        _ => return None,
    }
    fields.push(("TopicArn", &m.topic_arn));
    fields.push(("Type", &m.kind));
    let mut s = String::new();
    for (name, value) in fields {
        s.push_str(name);
        s.push('\n');
        s.push_str(value);
        s.push('\n');
    }
    Some(s)
}

/// Whether `url` is `https://sns.<region>.amazonaws.com/…` (no user, no
/// other port), and, for a certificate, a `.pem` path.
pub(crate) fn sns_url(url: &str, certificate: bool) -> bool {
    let Ok(u) = url::Url::parse(url) else {
        return false;
    };
    let host_ok = u.host_str().is_some_and(|h| {
        h.strip_prefix("sns.")
            .and_then(|rest| rest.strip_suffix(".amazonaws.com"))
            .is_some_and(|region| {
                !region.is_empty()
                    && region
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            })
    });
    u.scheme() == "https"
        && host_ok
        && u.username().is_empty()
        && u.password().is_none()
        && u.port().is_none()
        && (!certificate || u.path().ends_with(".pem"))
}

/// DER of a PEM or DER certificate.
fn certificate_der(bytes: &[u8]) -> Option<Vec<u8>> {
    match CertificateDer::from_pem_slice(bytes) {
        Ok(c) => Some(c.as_ref().to_vec()),
        Err(_) if bytes.first() == Some(&0x30) => Some(bytes.to_vec()),
        Err(_) => None,
    }
}

/// The certificate's SubjectPublicKeyInfo (DER).
fn public_key(der: &[u8]) -> Option<Vec<u8>> {
    let cert = CertificateDer::from(der);
    let ee = webpki::EndEntityCert::try_from(&cert).ok()?;
    Some(ee.subject_public_key_info().as_ref().to_vec())
}

/// Checks the message's signature with the certificate `cert_der` and its
/// timestamp against `now`.
pub(crate) fn verify(m: &SnsMessage, cert_der: &[u8], now: DateTime<Utc>) -> bool {
    let algorithm: &'static dyn signature::VerificationAlgorithm =
        match m.signature_version.as_str() {
            "1" => &signature::RSA_PKCS1_2048_8192_SHA1_FOR_LEGACY_USE_ONLY,
            "2" => &signature::RSA_PKCS1_2048_8192_SHA256,
            _ => return false,
        };
    let (Some(text), Ok(sig), Some(key)) = (
        string_to_sign(m),
        STANDARD.decode(m.signature.trim()),
        public_key(cert_der),
    ) else {
        return false;
    };
    if UnparsedPublicKey::new(algorithm, key)
        .verify(text.as_bytes(), &sig)
        .is_err()
    {
        return false;
    }
    DateTime::parse_from_rfc3339(&m.timestamp).is_ok_and(|t| {
        let age = now.signed_duration_since(t).num_seconds();
        (-super::MAX_SKEW_SECS..=MAX_AGE_SECS).contains(&age)
    })
}

/// The bounces and complaints of an SES notification (the SNS `Message`):
/// one event per recipient. Other notification types give none.
pub(crate) fn events(sns_message_id: &str, message: &str) -> Result<Vec<Reported>, String> {
    let v: Value = serde_json::from_str(message).map_err(|e| e.to_string())?;
    let kind = v["notificationType"]
        .as_str()
        .or_else(|| v["eventType"].as_str())
        .unwrap_or("");
    let mail = &v["mail"];
    let mut find = Vec::new();
    if let Some(id) = mail["messageId"].as_str() {
        find.push(Correlation::RelayId(id.to_string()));
    }
    if let Some(id) = mail["commonHeaders"]["messageId"].as_str() {
        find.push(Correlation::MessageId(id.to_string()));
    }
    let (part, recipients, kind) = match kind {
        "Bounce" => {
            let b = &v["bounce"];
            let kind = match b["bounceType"].as_str() {
                Some("Permanent") => BounceKind::Hard,
                _ => BounceKind::Soft,
            };
            (b, &b["bouncedRecipients"], kind)
        }
        "Complaint" => {
            let c = &v["complaint"];
            (c, &c["complainedRecipients"], BounceKind::Complaint)
        }
        _ => return Ok(Vec::new()),
    };
    let feedback = part["feedbackId"].as_str().unwrap_or(sns_message_id);
    let occurred_at = rfc3339_or_now(part["timestamp"].as_str());
    let mut out = Vec::new();
    for r in recipients.as_array().map(Vec::as_slice).unwrap_or_default() {
        let Some(address) = r["emailAddress"].as_str() else {
            continue;
        };
        let reason = r["diagnosticCode"]
            .as_str()
            .or_else(|| part["complaintFeedbackType"].as_str())
            .or_else(|| part["bounceSubType"].as_str());
        out.push(Reported {
            find: find.clone(),
            address: Some(address.to_string()),
            kind,
            reason: reason.map(str::to_string),
            status: r["status"].as_str().map(str::to_string),
            occurred_at,
            event_id: format!("{feedback}:{}", address.to_ascii_lowercase()),
        });
    }
    Ok(out)
}

/// `POST /webhooks/ses`.
pub(crate) async fn hook(State(state): State<AppState>, body: Bytes) -> Response {
    let Some(ses) = &state.settings.providers.ses else {
        return refused();
    };
    let Ok(m) = serde_json::from_slice::<SnsMessage>(&body) else {
        return malformed("not an SNS message");
    };
    if !ses.topic_arns.contains(&m.topic_arn) || !sns_url(&m.signing_cert_url, true) {
        tracing::warn!("ses: message refused (topic or certificate URL)");
        return refused();
    }
    let Some(cert) = ses.certificate(&m.signing_cert_url).await else {
        return refused();
    };
    if !verify(&m, &cert, Utc::now()) {
        tracing::warn!("ses: message refused (signature or timestamp)");
        return refused();
    }
    match m.kind.as_str() {
        "SubscriptionConfirmation" => confirm(m.subscribe_url.as_deref().unwrap_or("")).await,
        "Notification" => match events(&m.message_id, &m.message) {
            Ok(events) => record(&state, "ses", events).await,
            Err(e) => malformed(&format!("SES notification: {e}")),
        },
        _ => record(&state, "ses", Vec::new()).await,
    }
}

/// Confirms a verified subscription: a GET of its SubscribeURL, when that
/// is on an SNS host.
async fn confirm(url: &str) -> Response {
    use axum::response::IntoResponse as _;
    if !sns_url(url, false) {
        tracing::warn!("ses: SubscribeURL is not an SNS address; not confirmed");
        return malformed("SubscribeURL is not an SNS address");
    }
    let client = match reqwest::Client::builder()
        .timeout(FETCH_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "ses: HTTP client");
            return axum::http::StatusCode::BAD_GATEWAY.into_response();
        }
    };
    match client.get(url).send().await {
        Ok(r) if r.status().is_success() => {
            tracing::info!("ses: SNS subscription confirmed");
            (axum::http::StatusCode::OK, "subscription confirmed\n").into_response()
        }
        Ok(r) => {
            tracing::warn!(status = %r.status(), "ses: SNS refused the confirmation");
            axum::http::StatusCode::BAD_GATEWAY.into_response()
        }
        Err(e) => {
            tracing::warn!(error = %e, "ses: confirmation request failed");
            axum::http::StatusCode::BAD_GATEWAY.into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_sns_hosts_over_https() {
        for (url, cert, ok) in [
            (
                "https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-abc.pem",
                true,
                true,
            ),
            (
                "https://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription&Token=x",
                false,
                true,
            ),
            ("http://sns.eu-west-1.amazonaws.com/x.pem", true, false),
            (
                "https://sns.eu-west-1.amazonaws.com.evil.test/x.pem",
                true,
                false,
            ),
            (
                "https://evil.test/sns.eu-west-1.amazonaws.com/x.pem",
                true,
                false,
            ),
            ("https://sns..amazonaws.com/x.pem", true, false),
            ("https://sns.eu_west.amazonaws.com/x.pem", true, false),
            (
                "https://user@sns.eu-west-1.amazonaws.com/x.pem",
                true,
                false,
            ),
            (
                "https://sns.eu-west-1.amazonaws.com:8443/x.pem",
                true,
                false,
            ),
            ("https://sns.eu-west-1.amazonaws.com/x.txt", true, false),
            ("https://s3.eu-west-1.amazonaws.com/x.pem", true, false),
            ("not a url", false, false),
        ] {
            assert_eq!(sns_url(url, cert), ok, "{url}");
        }
    }

    fn message(kind: &str, subject: Option<&str>) -> SnsMessage {
        SnsMessage {
            kind: kind.into(),
            message_id: "m-1".into(),
            topic_arn: "arn:aws:sns:eu-west-1:123:ses".into(),
            subject: subject.map(str::to_string),
            message: "{}".into(),
            timestamp: "2026-01-01T00:00:00.000Z".into(),
            signature_version: "2".into(),
            signature: String::new(),
            signing_cert_url: String::new(),
            subscribe_url: Some("https://sns.eu-west-1.amazonaws.com/?c".into()),
            token: Some("tok".into()),
        }
    }

    #[test]
    fn canonical_strings() {
        assert_eq!(
            string_to_sign(&message("Notification", None)).unwrap(),
            "Message\n{}\nMessageId\nm-1\nTimestamp\n2026-01-01T00:00:00.000Z\n\
             TopicArn\narn:aws:sns:eu-west-1:123:ses\nType\nNotification\n"
        );
        assert!(
            string_to_sign(&message("Notification", Some("S")))
                .unwrap()
                .contains("MessageId\nm-1\nSubject\nS\nTimestamp\n")
        );
        assert_eq!(
            string_to_sign(&message("SubscriptionConfirmation", None)).unwrap(),
            "Message\n{}\nMessageId\nm-1\nSubscribeURL\nhttps://sns.eu-west-1.amazonaws.com/?c\n\
             Timestamp\n2026-01-01T00:00:00.000Z\nToken\ntok\n\
             TopicArn\narn:aws:sns:eu-west-1:123:ses\nType\nSubscriptionConfirmation\n"
        );
        assert_eq!(string_to_sign(&message("Other", None)), None);
    }

    #[test]
    fn ses_notifications() {
        let bounce = r#"{"notificationType":"Bounce","bounce":{"bounceType":"Permanent",
            "bounceSubType":"General","feedbackId":"fb-1","timestamp":"2026-01-01T00:00:01Z",
            "bouncedRecipients":[{"emailAddress":"Ann@x.example","status":"5.1.1",
            "diagnosticCode":"smtp; 550 5.1.1 no such user"}]},
            "mail":{"messageId":"0100-relay","commonHeaders":{"messageId":"<m@x>"}}}"#;
        let got = events("sns-1", bounce).unwrap();
        assert_eq!(got.len(), 1);
        let e = &got[0];
        assert_eq!(e.kind, BounceKind::Hard);
        assert_eq!(
            e.find,
            vec![
                Correlation::RelayId("0100-relay".into()),
                Correlation::MessageId("<m@x>".into())
            ]
        );
        assert_eq!(e.status.as_deref(), Some("5.1.1"));
        assert_eq!(e.event_id, "fb-1:ann@x.example");
        let transient = bounce.replace("Permanent", "Transient");
        assert_eq!(
            events("sns-1", &transient).unwrap()[0].kind,
            BounceKind::Soft
        );
        let complaint = r#"{"eventType":"Complaint","complaint":{"complaintFeedbackType":"abuse",
            "complainedRecipients":[{"emailAddress":"b@x.example"},{"emailAddress":"c@x.example"}]},
            "mail":{"messageId":"r"}}"#;
        let got = events("sns-2", complaint).unwrap();
        assert_eq!(got.len(), 2);
        assert!(got.iter().all(|e| e.kind == BounceKind::Complaint));
        assert_eq!(got[1].event_id, "sns-2:c@x.example");
        assert!(
            events("sns-3", r#"{"notificationType":"Delivery"}"#)
                .unwrap()
                .is_empty()
        );
        assert!(events("sns-4", "not json").is_err());
    }
}
