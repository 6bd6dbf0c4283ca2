//! `POST /webhooks/unsubscribe` and `POST /webhooks/bounce` (a bounce
//! event of source `webhook`, see `letterpress_store::BounceEvent`): JSON bodies
//! signed with `X-Letterpress-Signature: sha256=<hex HMAC-SHA256 of
//! "TIMESTAMP.BODY">`, the Unix time in `X-Letterpress-Timestamp`.
//!
//! The signature is checked over the raw bytes before anything is parsed,
//! so an unsigned body never reaches the JSON parser. A request signed more
//! than five minutes from now is refused, and one already acted on (its
//! signature seen before) changes nothing again: a captured request cannot
//! be replayed, and a sender's retry is harmless. Unknown addresses answer
//! 200 like known ones (with `changed: 0`): a webhook must not become a way
//! to find out who is on the list.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use letterpress_store::{BounceEvent, BounceKind, Correlation};
use serde::Deserialize;
use serde_json::json;

use crate::AppState;

/// The header that carries the signature.
pub(crate) const SIGNATURE_HEADER: &str = "x-letterpress-signature";
/// The header that carries the Unix time the request was signed at.
pub(crate) const TIMESTAMP_HEADER: &str = "x-letterpress-timestamp";

/// What a request that was acted on before answers.
fn already_done() -> Response {
    (
        StatusCode::OK,
        Json(json!({ "changed": 0, "duplicate": true })),
    )
        .into_response()
}

fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}

/// What a request is remembered by once acted on.
fn sighting(route: &str, signature: &str) -> String {
    format!("{route} {}", signature.trim())
}

/// The store failed after the request was admitted: it was not acted on,
/// so its signature is forgotten again and the sender's retry will count.
async fn not_done(state: &AppState, route: &str, headers: &HeaderMap) -> Response {
    if let Some(signature) = headers.get(SIGNATURE_HEADER).and_then(|v| v.to_str().ok())
        && let Err(e) = state
            .store
            .forget_sighting(&sighting(route, signature))
            .await
    {
        tracing::error!(error = %e, "webhook: cannot forget a request that was not acted on");
    }
    error(StatusCode::SERVICE_UNAVAILABLE, "database unavailable")
}

/// How a request was let in.
enum Admitted {
    /// First time: act on it.
    Fresh,
    /// Seen before: answer as done, change nothing.
    Repeat,
}

/// Checks the timestamp and signature, then whether the request was acted
/// on before; `Err` is the answer to give.
async fn admit(
    state: &AppState,
    route: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Admitted, Response> {
    let Some(key) = &state.settings.webhook_key else {
        tracing::warn!("webhook refused: server.webhook_secret is not configured");
        return Err(error(
            StatusCode::UNAUTHORIZED,
            "webhooks are not configured",
        ));
    };
    let header = |name| headers.get(name).and_then(|v| v.to_str().ok());
    let (Some(timestamp), Some(signature)) = (header(TIMESTAMP_HEADER), header(SIGNATURE_HEADER))
    else {
        return Err(error(
            StatusCode::UNAUTHORIZED,
            "missing X-Letterpress-Timestamp or X-Letterpress-Signature",
        ));
    };
    let now = chrono::Utc::now();
    if let Err(refusal) = key.verify(timestamp, body, signature, now.timestamp()) {
        tracing::warn!(%refusal, "webhook refused");
        return Err(error(StatusCode::UNAUTHORIZED, &refusal.to_string()));
    }
    // The signature names the request (timestamp and body) exactly; with
    // the route, one request to one endpoint.
    match state
        .store
        .first_sighting(&sighting(route, signature), now)
        .await
    {
        Ok(true) => Ok(Admitted::Fresh),
        Ok(false) => {
            tracing::info!("webhook seen before; nothing changed");
            Ok(Admitted::Repeat)
        }
        Err(e) => {
            tracing::error!(error = %e, "webhook: store");
            Err(error(
                StatusCode::SERVICE_UNAVAILABLE,
                "database unavailable",
            ))
        }
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
    const ROUTE: &str = "/webhooks/unsubscribe";
    match admit(&state, ROUTE, &headers, &body).await {
        Ok(Admitted::Fresh) => {}
        Ok(Admitted::Repeat) => return already_done(),
        Err(answer) => return answer,
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
                return not_done(&state, ROUTE, &headers).await;
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
    reason: Option<String>,
}

/// `{"email": "…", "type": "hard" | "soft" | "complaint"}`.
pub(crate) async fn bounce(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    const ROUTE: &str = "/webhooks/bounce";
    match admit(&state, ROUTE, &headers, &body).await {
        Ok(Admitted::Fresh) => {}
        Ok(Admitted::Repeat) => return already_done(),
        Err(answer) => return answer,
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
    // The signature names the request exactly: the event's id, so that a
    // replay after the sighting was forgotten still counts once.
    let event = BounceEvent {
        find: Correlation::Address(parsed.email.clone()),
        kind,
        reason: parsed.reason,
        status: None,
        occurred_at: chrono::Utc::now(),
        source: "webhook",
        event_id: headers
            .get(SIGNATURE_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .trim()
            .to_string(),
    };
    match state
        .store
        .record_bounce_event(&event, state.settings.soft_bounce_limit)
        .await
        .map(|o| o.suppressed)
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
            not_done(&state, ROUTE, &headers).await
        }
    }
}
