//! `/u/{token}`: the unsubscribe page and RFC 8058 one-click unsubscribe.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use letterpress_signing::Purpose;

use crate::AppState;
use crate::pages::{self, button_form, esc, mask_email, not_found};

fn now_unix() -> u64 {
    chrono::Utc::now().timestamp().max(0) as u64
}

/// `GET /u/{token}`: names the newsletter and the (masked) address, and
/// offers one button. Changes nothing.
pub(crate) async fn page(State(state): State<AppState>, Path(token): Path<String>) -> Response {
    let name = &state.settings.newsletter_name;
    let Some(claims) = state
        .settings
        .keyring
        .verify(&token, Purpose::Unsubscribe, now_unix())
    else {
        return not_found(name);
    };
    let subscriber = match state.store.get_subscriber_by_id(claims.subscriber_id).await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "unsubscribe page: store");
            None
        }
    };
    let address = subscriber
        .as_ref()
        .map(|s| format!(" for <strong>{}</strong>", esc(&mask_email(&s.email))))
        .unwrap_or_default();
    // Already off the list: say so rather than offer a button that does
    // nothing (the POST would still answer 200).
    if subscriber
        .as_ref()
        .is_some_and(|s| s.status.is_suppressed())
    {
        return pages::page(
            StatusCode::OK,
            name,
            "You are unsubscribed",
            &format!(
                "<p>No more issues of {}{address} will be sent.</p>",
                esc(name)
            ),
        );
    }
    let body = format!(
        "<p>Stop receiving {}{address}? One click and no more issues will be sent.</p>{}",
        esc(name),
        button_form(Some(("List-Unsubscribe", "One-Click")), "Unsubscribe")
    );
    pages::page(StatusCode::OK, name, "Unsubscribe?", &body)
}

/// `POST /u/{token}`: unsubscribes. The body is whatever the mailbox
/// provider sends (`List-Unsubscribe=One-Click`, urlencoded or multipart)
/// or the page's own form; it is not needed to act, so it is not parsed.
/// Answers 200 without a redirect (RFC 8058 clients do not follow one) and
/// is idempotent.
pub(crate) async fn unsubscribe(
    State(state): State<AppState>,
    Path(token): Path<String>,
    _body: Bytes,
) -> Response {
    let name = &state.settings.newsletter_name;
    let Some(claims) = state
        .settings
        .keyring
        .verify(&token, Purpose::Unsubscribe, now_unix())
    else {
        return not_found(name);
    };
    match state
        .store
        .unsubscribe(claims.subscriber_id, "one-click")
        .await
    {
        Ok(changed) => {
            if changed {
                tracing::info!(subscriber = claims.subscriber_id, "unsubscribed");
                state.metrics.unsubscribed();
            }
            pages::page(
                StatusCode::OK,
                name,
                "You are unsubscribed",
                &format!(
                    "<p>You will not receive {} any more. Sorry to see you go.</p>",
                    esc(name)
                ),
            )
        }
        Err(e) => {
            tracing::error!(error = %e, "unsubscribe failed");
            pages::page(
                StatusCode::SERVICE_UNAVAILABLE,
                name,
                "Please try again",
                "<p>We could not record your unsubscribe just now. Please try again in a minute.</p>",
            )
        }
    }
}
