//! Double opt-in: `POST /subscribe`, then `GET /confirm/{token}` (a page)
//! and `POST /confirm/{token}` (activates).
//!
//! Every signup gets the same answer whatever the address's state, so the
//! form cannot be used to learn who is subscribed.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use letterpress_core::{SubscriberEmail, SubscriberName};
use letterpress_signing::Purpose;
use letterpress_store::PendingOutcome;
use serde::Deserialize;
use serde_json::json;

use crate::AppState;
use crate::pages::{button_form, esc, not_found, page};

/// A boxed future, for [`ConfirmationMailer`].
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Sends the confirmation email of a signup through the same transport
/// that delivers issues. The binary provides it; the server knows nothing
/// of SMTP.
pub trait ConfirmationMailer: Send + Sync {
    /// Sends `confirm_url` to `email`.
    fn send_confirmation<'a>(
        &'a self,
        email: &'a str,
        name: Option<&'a str>,
        confirm_url: &'a str,
    ) -> BoxFuture<'a, Result<(), String>>;
}

#[derive(Deserialize)]
struct SignupForm {
    email: String,
    #[serde(default)]
    name: Option<String>,
}

fn wants_json(headers: &HeaderMap) -> bool {
    let is = |h, v: &str| {
        headers
            .get(h)
            .and_then(|x| x.to_str().ok())
            .is_some_and(|x| x.contains(v))
    };
    is(header::CONTENT_TYPE, "application/json") || is(header::ACCEPT, "application/json")
}

/// `POST /subscribe` with a form or JSON body (`email`, optional `name`).
pub(crate) async fn subscribe(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let json = wants_json(&headers);
    let reply = |status: StatusCode, title: &str, message: &str| -> Response {
        if json {
            (status, Json(json!({ "status": title, "message": message }))).into_response()
        } else {
            page(
                status,
                &state.settings.newsletter_name,
                title,
                &format!("<p>{}</p>", esc(message)),
            )
        }
    };
    if state.signup_limiter.check_key(&peer.ip()).is_err() {
        return reply(
            StatusCode::TOO_MANY_REQUESTS,
            "Too many signups",
            "Too many signups from your address. Please try again in a minute.",
        );
    }
    let form: Result<SignupForm, String> = if headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"))
    {
        serde_json::from_slice(&body).map_err(|e| e.to_string())
    } else {
        serde_urlencoded_form(&body)
    };
    let form = match form {
        Ok(f) => f,
        Err(e) => {
            return reply(
                StatusCode::BAD_REQUEST,
                "Invalid signup",
                &format!("Could not read the form: {e}"),
            );
        }
    };
    let email = match SubscriberEmail::parse(&form.email) {
        Ok(e) => e,
        Err(e) => return reply(StatusCode::BAD_REQUEST, "Invalid address", &e.to_string()),
    };
    let name = form
        .name
        .as_deref()
        .and_then(SubscriberName::parse_truncated)
        .map(SubscriberName::into_string);
    let outcome = match state
        .store
        .create_pending(&email, name.as_deref(), "signup")
        .await
    {
        Ok(o) => o,
        Err(e) => {
            tracing::error!(error = %e, "signup: store");
            return reply(
                StatusCode::SERVICE_UNAVAILABLE,
                "Please try again",
                "Please try again in a minute.",
            );
        }
    };
    let to_confirm = match outcome {
        PendingOutcome::Created { id } | PendingOutcome::StillPending { id } => Some(id),
        // A suppressed address may come back, but only by confirming from
        // its own mailbox.
        PendingOutcome::Suppressed { id } => id,
        PendingOutcome::AlreadyActive { .. } => None,
    };
    if let Some(id) = to_confirm {
        let expires =
            chrono::Utc::now().timestamp().max(0) as u64 + state.settings.confirm_ttl.as_secs();
        let token = state
            .settings
            .keyring
            .token(Purpose::Confirm, id, Some(expires));
        let url = format!(
            "{}/confirm/{token}",
            state.settings.public_url.trim_end_matches('/')
        );
        if let Err(e) = state
            .mailer
            .send_confirmation(email.as_str(), name.as_deref(), &url)
            .await
        {
            tracing::error!(error = %e, "signup: confirmation email not sent");
        }
    }
    reply(
        StatusCode::OK,
        "Check your inbox",
        "If this address can be subscribed, a confirmation link is on its way. Click it to start receiving the newsletter.",
    )
}

/// Reads `email=…&name=…` without pulling in a form crate's extractor,
/// so the handler can answer malformed bodies in its own words.
fn serde_urlencoded_form(body: &[u8]) -> Result<SignupForm, String> {
    let mut email = None;
    let mut name = None;
    for (k, v) in url::form_urlencoded::parse(body) {
        match k.as_ref() {
            "email" => email = Some(v.into_owned()),
            "name" => name = Some(v.into_owned()),
            _ => {}
        }
    }
    Ok(SignupForm {
        email: email.ok_or("no email field")?,
        name,
    })
}

fn verify(state: &AppState, token: &str) -> Option<i64> {
    let now = chrono::Utc::now().timestamp().max(0) as u64;
    state
        .settings
        .keyring
        .verify(token, Purpose::Confirm, now)
        .map(|c| c.subscriber_id)
}

/// `GET /confirm/{token}`: one button; changes nothing.
pub(crate) async fn confirm_page(
    State(state): State<AppState>,
    Path(token): Path<String>,
) -> Response {
    let name = &state.settings.newsletter_name;
    if verify(&state, &token).is_none() {
        return not_found(name);
    }
    let body = format!(
        "<p>Confirm that you want to receive {}.</p>{}",
        esc(name),
        button_form(None, "Confirm my subscription")
    );
    page(StatusCode::OK, name, "Confirm your subscription", &body)
}

/// `POST /confirm/{token}`: activates the subscriber.
pub(crate) async fn confirm(State(state): State<AppState>, Path(token): Path<String>) -> Response {
    let name = &state.settings.newsletter_name;
    let Some(id) = verify(&state, &token) else {
        return not_found(name);
    };
    match state.store.confirm(id).await {
        Ok(_) => page(
            StatusCode::OK,
            name,
            "You are subscribed",
            &format!(
                "<p>Thank you. The next issue of {} will reach you.</p>",
                esc(name)
            ),
        ),
        Err(e) => {
            tracing::error!(error = %e, "confirm: store");
            page(
                StatusCode::SERVICE_UNAVAILABLE,
                name,
                "Please try again",
                "<p>We could not confirm just now. Please try again in a minute.</p>",
            )
        }
    }
}
