//! `/u/{token}`: the unsubscribe page and RFC 8058 one-click unsubscribe.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use chrono::Utc;
use letterpress_signing::{Binding, Purpose};
use letterpress_store::{RowBinding, TokenUnsubscribe};

use crate::AppState;
use crate::pages::{self, button_form, esc, mask_email, not_found};

/// The id test copies carry (`send --to`): no subscriber has it.
const TEST_COPY: i64 = 0;

/// The subscriber and binding an unsubscribe token names, if it verifies.
fn verify(state: &AppState, token: &str) -> Option<(i64, RowBinding)> {
    let now = Utc::now().timestamp().max(0) as u64;
    let claims = state
        .settings
        .keyring
        .verify(token, Purpose::Unsubscribe, now)?;
    let binding = match claims.binding {
        Binding::Row(salt) => RowBinding::Row(salt),
        Binding::Legacy => RowBinding::Legacy,
    };
    Some((claims.subscriber_id, binding))
}

/// What a test copy's link says: it unsubscribes nobody.
fn test_copy(newsletter: &str) -> Response {
    pages::page(
        StatusCode::OK,
        newsletter,
        "This was a test copy",
        "<p>This link came in a test copy of an issue, sent to check it before it goes out. \
         It is not tied to any subscription, so nothing was changed.</p>",
    )
}

/// `GET /u/{token}`: names the newsletter and the (masked) address, and
/// offers one button. Changes nothing.
pub(crate) async fn page(State(state): State<AppState>, Path(token): Path<String>) -> Response {
    let name = &state.settings.newsletter_name;
    let Some((id, binding)) = verify(&state, &token) else {
        return not_found(name);
    };
    if id == TEST_COPY {
        return test_copy(name);
    }
    let subscriber = match state.store.subscriber_by_token(id, binding).await {
        Ok(Some(s)) => s,
        // A token whose row is gone or is another's now: like a forgery.
        Ok(None) => return not_found(name),
        Err(e) => {
            tracing::error!(error = %e, "unsubscribe page: store");
            return pages::page(
                StatusCode::SERVICE_UNAVAILABLE,
                name,
                "Please try again",
                "<p>We could not look up your subscription just now. Please try again in a minute.</p>",
            );
        }
    };
    let address = format!(
        " for <strong>{}</strong>",
        esc(&mask_email(&subscriber.email))
    );
    // Already off the list: say so rather than offer a button that does
    // nothing (the POST would still answer 200).
    if subscriber.status.is_suppressed() {
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
    let Some((id, binding)) = verify(&state, &token) else {
        return not_found(name);
    };
    if id == TEST_COPY {
        return test_copy(name);
    }
    match state
        .store
        .unsubscribe_by_token(id, binding, "one-click", Utc::now())
        .await
    {
        Ok(TokenUnsubscribe::NoSuchSubscriber) => not_found(name),
        Ok(done) => {
            if done == TokenUnsubscribe::Unsubscribed {
                tracing::info!(subscriber = id, "unsubscribed");
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
