//! Double opt-in: `POST /subscribe`, then `GET /confirm/{token}` (a page)
//! and `POST /confirm/{token}` (activates, once).
//!
//! Every signup gets the same answer whatever the address's state, and in
//! about the same time: the store runs the same statements for every
//! address (`Store::request_confirmation`), and the mail, when there is
//! one, is queued and sent after the answer. So the form tells a visitor
//! nothing about who is subscribed, and cannot be used to mail-bomb an
//! address: the store allows one confirmation per address every ten
//! minutes and three a day, on top of the per-visitor limit here.
//!
//! A form (from letterpress's pages or a form embedded in the operator's
//! site) is answered with a 303 to `server.signup_redirect` or to
//! `GET /subscribe/thanks`, so a reload never posts again; JSON is
//! answered with JSON. A signup whose honeypot field is filled (see
//! [`crate::HONEYPOT_FIELD`]) gets the very same answer and does nothing.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use chrono::Utc;
use letterpress_core::{SubscriberEmail, SubscriberName};
use letterpress_signing::{Binding, Purpose};
use letterpress_store::{ConfirmOutcome, RowBinding};
use serde::Deserialize;
use serde_json::json;

use crate::pages::{button_form, esc, not_found, page};
use crate::{AppState, ConfirmationJob, HONEYPOT_FIELD, MAX_TRACKED_VISITORS};

/// A boxed future, for [`ConfirmationMailer`].
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Why a confirmation mail could not be sent (the mailer's own error).
pub type MailerError = Box<dyn std::error::Error + Send + Sync>;

/// Sends the confirmation email of a signup through the same message code
/// and transport that deliver issues. The binary provides it; the server
/// knows nothing of SMTP.
pub trait ConfirmationMailer: Send + Sync {
    /// Sends `confirm_url` to `email` (the address as stored).
    fn send_confirmation<'a>(
        &'a self,
        email: &'a str,
        name: Option<&'a str>,
        confirm_url: &'a str,
    ) -> BoxFuture<'a, Result<(), MailerError>>;
}

#[derive(Deserialize)]
struct SignupForm {
    email: String,
    #[serde(default)]
    name: Option<String>,
    /// The honeypot ([`HONEYPOT_FIELD`]).
    #[serde(default)]
    website: Option<String>,
}

/// What a successful signup is told.
const CHECK_INBOX: (&str, &str) = (
    "Check your inbox",
    "If this address can be subscribed, a confirmation link is on its way. Click it to start receiving the newsletter.",
);

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
    let visitor = crate::visitor(&state, peer, &headers);
    if state.signup_limiter.len() > MAX_TRACKED_VISITORS
        || state.signup_limiter.check_key(&visitor).is_err()
    {
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
    // Everything a person's signup is checked for, the bot's was too; it
    // gets the same answer, and nothing is stored or sent.
    if form
        .website
        .as_deref()
        .is_some_and(|w| !w.trim().is_empty())
    {
        tracing::info!(field = HONEYPOT_FIELD, "signup: honeypot filled; ignored");
        return signed_up(&state, json);
    }
    let name = form
        .name
        .as_deref()
        .and_then(SubscriberName::parse_truncated)
        .map(SubscriberName::into_string);
    let signup = match state
        .store
        .request_confirmation(
            &email,
            name.as_deref(),
            "signup",
            state.settings.signup_limits,
            Utc::now(),
        )
        .await
    {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "signup: store");
            return reply(
                StatusCode::SERVICE_UNAVAILABLE,
                "Please try again",
                "Please try again in a minute.",
            );
        }
    };
    if let Some(mail) = signup.confirmation {
        let expires = Utc::now().timestamp().max(0) as u64 + state.settings.confirm_ttl.as_secs();
        let token = state.settings.keyring.token(
            Purpose::Confirm,
            mail.subscriber_id,
            mail.nonce,
            Some(expires),
        );
        let job = ConfirmationJob {
            email: mail.email,
            name: mail.name,
            confirm_url: format!(
                "{}/confirm/{token}",
                state.settings.public_url.trim_end_matches('/')
            ),
        };
        if state.confirmations.try_send(job).is_err() {
            tracing::warn!("signup: the confirmation queue is full; a confirmation was dropped");
        }
    }
    signed_up(&state, json)
}

/// The answer to every signup that was taken (or silently dropped): JSON,
/// or a 303 to the thank-you page.
fn signed_up(state: &AppState, json: bool) -> Response {
    let (title, message) = CHECK_INBOX;
    if json {
        return (
            StatusCode::OK,
            Json(json!({ "status": title, "message": message })),
        )
            .into_response();
    }
    let to = match &state.settings.signup_redirect {
        Some(r) => r.as_str().to_string(),
        None => format!(
            "{}/subscribe/thanks",
            state.settings.public_url.trim_end_matches('/')
        ),
    };
    Redirect::to(&to).into_response()
}

/// `GET /subscribe/thanks`: where a form signup lands without
/// `server.signup_redirect`. Says the same to everyone.
pub(crate) async fn thanks(State(state): State<AppState>) -> Response {
    let (title, message) = CHECK_INBOX;
    page(
        StatusCode::OK,
        &state.settings.newsletter_name,
        title,
        &format!("<p>{}</p>", esc(message)),
    )
}

/// Reads `email=…&name=…` without pulling in a form crate's extractor,
/// so the handler can answer malformed bodies in its own words.
fn serde_urlencoded_form(body: &[u8]) -> Result<SignupForm, String> {
    let mut email = None;
    let mut name = None;
    let mut website = None;
    for (k, v) in url::form_urlencoded::parse(body) {
        match k.as_ref() {
            "email" => email = Some(v.into_owned()),
            "name" => name = Some(v.into_owned()),
            HONEYPOT_FIELD => website = Some(v.into_owned()),
            _ => {}
        }
    }
    Ok(SignupForm {
        email: email.ok_or("no email field")?,
        name,
        website,
    })
}

/// The subscriber and binding a confirmation token names, if it verifies.
fn verify(state: &AppState, token: &str) -> Option<(i64, RowBinding)> {
    let now = Utc::now().timestamp().max(0) as u64;
    let claims = state
        .settings
        .keyring
        .verify(token, Purpose::Confirm, now)?;
    let binding = match claims.binding {
        Binding::Row(nonce) => RowBinding::Row(nonce),
        Binding::Legacy => RowBinding::Legacy,
    };
    Some((claims.subscriber_id, binding))
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

/// `POST /confirm/{token}`: activates the subscriber, once.
pub(crate) async fn confirm(State(state): State<AppState>, Path(token): Path<String>) -> Response {
    let name = &state.settings.newsletter_name;
    let Some((id, binding)) = verify(&state, &token) else {
        return not_found(name);
    };
    match state.store.confirm_signup(id, binding, Utc::now()).await {
        Ok(ConfirmOutcome::Confirmed) => page(
            StatusCode::OK,
            name,
            "You are subscribed",
            &format!(
                "<p>Thank you. The next issue of {} will reach you.</p>",
                esc(name)
            ),
        ),
        Ok(ConfirmOutcome::NotConfirmable) => page(
            StatusCode::GONE,
            name,
            "This link cannot be used any more",
            "<p>It was used already, or the subscription changed since it was sent. \
             To subscribe, sign up again and use the link in the new email.</p>",
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
