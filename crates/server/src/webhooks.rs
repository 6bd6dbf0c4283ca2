//! `POST /webhooks/unsubscribe` and `POST /webhooks/bounce`: JSON bodies
//! signed with `X-Letterpress-Signature: sha256=<hex HMAC-SHA256(body)>`.
//!
//! The signature is checked over the raw bytes before anything is parsed,
//! so an unsigned body never reaches the JSON parser. Unknown addresses
//! answer 200 like known ones (with `changed: 0`): a webhook must not
//! become a way to find out who is on the list.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use letterpress_store::BounceKind;
use serde::Deserialize;
use serde_json::json;

use crate::AppState;

/// The header that carries the signature.
pub(crate) const SIGNATURE_HEADER: &str = "x-letterpress-signature";

fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}

/// Checks the signature; `Err` is the status and message to answer with.
fn authenticate(
    state: &AppState,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(), (StatusCode, &'static str)> {
    let Some(secret) = &state.settings.webhook_secret else {
        tracing::warn!("webhook refused: server.webhook_secret is not configured");
        return Err((StatusCode::UNAUTHORIZED, "webhooks are not configured"));
    };
    let signature = headers
        .get(SIGNATURE_HEADER)
        .and_then(|v| v.to_str().ok())
        .ok_or((StatusCode::UNAUTHORIZED, "missing X-Letterpress-Signature"))?;
    if letterpress_signing::verify_webhook(secret, body, signature) {
        Ok(())
    } else {
        Err((StatusCode::UNAUTHORIZED, "bad signature"))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UnsubscribeBody {
    email: Option<String>,
    #[serde(default)]
    emails: Vec<String>,
}

/// `{"email": "…"}` or `{"emails": ["…", …]}`.
pub(crate) async fn unsubscribe(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err((status, message)) = authenticate(&state, &headers, &body) {
        return error(status, message);
    }
    let parsed: UnsubscribeBody = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => return error(StatusCode::BAD_REQUEST, &format!("malformed JSON: {e}")),
    };
    let emails: Vec<String> = parsed.email.into_iter().chain(parsed.emails).collect();
    if emails.is_empty() {
        return error(StatusCode::BAD_REQUEST, "no `email` or `emails` given");
    }
    let mut changed = 0u64;
    for email in &emails {
        match state.store.unsubscribe_email(email, "webhook").await {
            Ok(true) => changed += 1,
            Ok(false) => {}
            Err(e) => {
                tracing::error!(error = %e, "webhook unsubscribe");
                return error(StatusCode::SERVICE_UNAVAILABLE, "database unavailable");
            }
        }
    }
    if changed > 0 {
        tracing::info!(changed, "unsubscribed by webhook");
    }
    (
        StatusCode::OK,
        Json(json!({ "received": emails.len(), "changed": changed })),
    )
        .into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BounceBody {
    email: String,
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    #[allow(dead_code)]
    reason: Option<String>,
}

/// `{"email": "…", "type": "hard" | "soft" | "complaint"}`.
pub(crate) async fn bounce(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err((status, message)) = authenticate(&state, &headers, &body) {
        return error(status, message);
    }
    let parsed: BounceBody = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => return error(StatusCode::BAD_REQUEST, &format!("malformed JSON: {e}")),
    };
    let kind = match parsed.kind.as_str() {
        "hard" => BounceKind::Hard,
        "soft" => BounceKind::Soft,
        "complaint" => BounceKind::Complaint,
        other => {
            return error(
                StatusCode::BAD_REQUEST,
                &format!("unknown type {other:?}: expected hard, soft or complaint"),
            );
        }
    };
    match state
        .store
        .record_bounce(&parsed.email, kind, state.settings.soft_bounce_limit)
        .await
    {
        Ok(suppressed) => {
            if suppressed {
                tracing::info!(kind = %parsed.kind, "subscriber suppressed by bounce webhook");
            }
            (
                StatusCode::OK,
                Json(json!({ "changed": u64::from(suppressed) })),
            )
                .into_response()
        }
        Err(e) => {
            tracing::error!(error = %e, "bounce webhook");
            error(StatusCode::SERVICE_UNAVAILABLE, "database unavailable")
        }
    }
}
