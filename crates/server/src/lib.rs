//! The letterpress HTTP server. HTTP only: what it sends (confirmations)
//! goes through a [`ConfirmationMailer`], and what it reports of the
//! delivery worker and the scheduler comes through [`WorkerStats`] and
//! [`SchedulerStats`]; the binary provides all three.
//!
//! Routes (see the contract's "HTTP" section):
//!
//! | route | what |
//! |---|---|
//! | `GET /u/{token}` | a page that names the newsletter and asks to confirm; changes nothing |
//! | `POST /u/{token}` | unsubscribes (RFC 8058 one-click or the page's form); 200, no redirect |
//! | `POST /webhooks/unsubscribe`, `POST /webhooks/bounce` | signed JSON from the systems around a newsletter |
//! | `POST /webhooks/{ses,postmark,mailgun,sendgrid,resend}` | the relays' bounce and complaint events, verified each provider's way (`providers/`) |
//! | `POST /subscribe`, `GET`/`POST /confirm/{token}` | double opt-in signup |
//! | `GET /healthz` | the database answers |
//! | `GET /metrics` | Prometheus text, with `Authorization: Bearer <server.metrics_token>` only |
//!
//! GET never changes anything: mail security scanners fetch every link in
//! a message, and an unsubscribe or confirmation on GET would fire for them.
//!
//! Every response carries headers that keep the pages from being framed,
//! sniffed, cached or leaking their (token-bearing) address as a referrer;
//! the listener bounds what a client may hold (see `listen.rs`).

mod client;
mod listen;
mod metrics;
mod pages;
mod providers;
mod signup;
mod unsubscribe;
mod webhooks;

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use letterpress_signing::{Keyring, WebhookKey};
use letterpress_store::{SignupLimits, Store};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;
use tracing::Instrument;

pub use client::{BadProxy, TrustedProxies};
pub use listen::HttpLimits;
use metrics::Metrics;
pub use metrics::{SchedulerSnapshot, SchedulerStats, WorkerSnapshot, WorkerStats};
pub use providers::{
    MailgunSettings, PROVIDER_BODY_LIMIT, PostmarkSettings, ProviderSettings, ResendSettings,
    SendgridSettings, SesSettings,
};
pub use providers::{resend::ResendSecretError, sendgrid::SendgridKeyError, ses::SesSettingsError};
pub use signup::{BoxFuture, ConfirmationMailer, MailerError};

/// Webhook bodies larger than this are refused with 413.
pub const WEBHOOK_BODY_LIMIT: usize = 64 * 1024;

/// Confirmation mails waiting to be sent at most; a signup beyond that is
/// answered like any other and its mail dropped (and logged).
const CONFIRMATION_QUEUE: usize = 1024;

/// Visitors the signup limiter tracks at most. Pruned every minute; if a
/// flood of distinct addresses fills it anyway, signups are refused until
/// the next pruning rather than let the map grow without bound.
const MAX_TRACKED_VISITORS: usize = 100_000;

/// What the server needs to know about the newsletter and its keys.
#[derive(Clone)]
pub struct ServerSettings {
    /// Shown on the pages.
    pub newsletter_name: String,
    /// `server.public_url`, for confirmation links.
    pub public_url: String,
    /// Verifies unsubscribe and confirmation tokens (and makes the latter).
    pub keyring: Keyring,
    /// Verifies webhook signatures; webhooks answer 401 while it is unset.
    pub webhook_key: Option<WebhookKey>,
    /// Soft bounces in a row that suppress a subscriber.
    pub soft_bounce_limit: u32,
    /// Signups accepted per visitor (IPv4 address or IPv6 /64) per minute.
    pub signup_per_minute: u32,
    /// Confirmations sent per address.
    pub signup_limits: SignupLimits,
    /// How long a confirmation link stays valid.
    pub confirm_ttl: Duration,
    /// Peers whose `X-Forwarded-For` names the visitor.
    pub trusted_proxies: TrustedProxies,
    /// Timeouts and the connection cap of the listener.
    pub http: HttpLimits,
    /// The bearer token `/metrics` asks for; without one it answers 404.
    pub metrics_token: Option<String>,
    /// The relays' bounce webhooks that are configured.
    pub providers: ProviderSettings,
}

/// A confirmation to send, queued by a signup.
struct ConfirmationJob {
    email: String,
    name: Option<String>,
    confirm_url: String,
}

/// The queue of confirmations and the mailer that empties it.
type QueuedMail = (mpsc::Receiver<ConfirmationJob>, Arc<dyn ConfirmationMailer>);

/// Shared by every request.
#[derive(Clone)]
pub struct AppState {
    store: Store,
    settings: Arc<ServerSettings>,
    metrics: Arc<Metrics>,
    signup_limiter: Arc<DefaultKeyedRateLimiter<IpAddr>>,
    confirmations: mpsc::Sender<ConfirmationJob>,
    /// Taken by [`serve`], which sends what signups queue.
    mailer: Arc<Mutex<Option<QueuedMail>>>,
}

impl AppState {
    /// State over `store`, sending confirmations with `mailer`; `worker`
    /// and `scheduler` feed `/metrics` with what the delivery worker and
    /// the scheduler running in the same process have done.
    pub fn new(
        store: Store,
        settings: ServerSettings,
        mailer: Arc<dyn ConfirmationMailer>,
        worker: Option<Arc<dyn WorkerStats>>,
        scheduler: Option<Arc<dyn SchedulerStats>>,
    ) -> Self {
        let per_minute = NonZeroU32::new(settings.signup_per_minute).unwrap_or(NonZeroU32::MIN);
        let (confirmations, queued) = mpsc::channel(CONFIRMATION_QUEUE);
        Self {
            store,
            settings: Arc::new(settings),
            metrics: Arc::new(Metrics::new(worker, scheduler)),
            signup_limiter: Arc::new(RateLimiter::keyed(Quota::per_minute(per_minute))),
            confirmations,
            mailer: Arc::new(Mutex::new(Some((queued, mailer)))),
        }
    }
}

/// The application's routes.
pub fn router(state: AppState) -> Router {
    let webhooks = Router::new()
        .route("/webhooks/unsubscribe", post(webhooks::unsubscribe))
        .route("/webhooks/bounce", post(webhooks::bounce))
        .layer(DefaultBodyLimit::max(WEBHOOK_BODY_LIMIT));
    // The relays batch events (SendGrid up to about 768 KB): a larger limit
    // of their own.
    let providers = Router::new()
        .route("/webhooks/ses", post(providers::ses::hook))
        .route("/webhooks/postmark", post(providers::postmark::hook))
        .route("/webhooks/mailgun", post(providers::mailgun::hook))
        .route("/webhooks/sendgrid", post(providers::sendgrid::hook))
        .route("/webhooks/resend", post(providers::resend::hook))
        .layer(DefaultBodyLimit::max(PROVIDER_BODY_LIMIT))
        .layer(RequestBodyLimitLayer::new(PROVIDER_BODY_LIMIT));
    Router::new()
        .route(
            "/u/{token}",
            get(unsubscribe::page).post(unsubscribe::unsubscribe),
        )
        .route("/subscribe", post(signup::subscribe))
        .route(
            "/confirm/{token}",
            get(signup::confirm_page).post(signup::confirm),
        )
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics::render))
        .merge(webhooks)
        // Forms and one-click bodies are tiny; refuse anything large early:
        // a declared length over the limit before the body is read, a body
        // without one as soon as it passes it.
        .layer(DefaultBodyLimit::max(WEBHOOK_BODY_LIMIT))
        .layer(RequestBodyLimitLayer::new(WEBHOOK_BODY_LIMIT))
        .merge(providers)
        // Reading the body is part of the request: one that declares a
        // body and sends it a byte at a time is cut off here.
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            state.settings.http.request_timeout,
        ))
        .layer(middleware::from_fn(security_headers))
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state)
}

/// The headers every answer carries. The pages need nothing but their own
/// inline style and forms that post back to us; they name a subscriber
/// (masked) and carry a token in their address, so they are never framed,
/// cached, or named in a Referer.
async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let h = response.headers_mut();
    let set = |h: &mut axum::http::HeaderMap, name: HeaderName, value: &'static str| {
        h.insert(name, HeaderValue::from_static(value));
    };
    set(
        h,
        header::CONTENT_SECURITY_POLICY,
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; \
         frame-ancestors 'none'; base-uri 'none'",
    );
    set(h, header::X_FRAME_OPTIONS, "DENY");
    set(h, header::REFERRER_POLICY, "no-referrer");
    set(h, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(h, header::CACHE_CONTROL, "no-store");
    response
}

/// A span per request, and the request counter by route and status.
async fn observe(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let span = tracing::info_span!("request", method = %request.method(), route = %route);
    let started = std::time::Instant::now();
    let response = next.run(request).instrument(span.clone()).await;
    let status = response.status().as_u16();
    // The access log line: one event in the request's span, so JSON logs
    // carry the method and route with the status and time taken.
    span.in_scope(|| {
        tracing::info!(
            status,
            micros = started.elapsed().as_micros() as u64,
            "request done"
        )
    });
    state.metrics.http_request(&route, status);
    response
}

async fn healthz(State(state): State<AppState>) -> Response {
    match state.store.ping().await {
        Ok(()) => (StatusCode::OK, "ok\n").into_response(),
        Err(e) => {
            tracing::error!(error = %e, "health check: database unreachable");
            (StatusCode::SERVICE_UNAVAILABLE, "database unreachable\n").into_response()
        }
    }
}

/// Serves on `listener` until `stop` is cancelled, then stops accepting and
/// finishes the requests in progress and the confirmations queued.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    stop: CancellationToken,
) -> std::io::Result<()> {
    let limits = state.settings.http;
    let mailer = state
        .mailer
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take();
    let mailing = mailer.map(|(queued, mailer)| tokio::spawn(send_confirmations(queued, mailer)));
    let pruning = tokio::spawn(prune_visitors(
        Arc::clone(&state.signup_limiter),
        stop.clone(),
    ));
    let app = router(state);
    let served = listen::serve(listener, app, limits, stop).await;
    // The router (and with it every sender of the queue) is gone: the
    // mailer finishes what was queued and ends.
    pruning.abort();
    if let Some(m) = mailing {
        let _ = m.await;
    }
    served
}

/// Sends the confirmations signups queued, one at a time, outside any
/// request: the answer to a signup never waits for SMTP.
async fn send_confirmations(
    mut queued: mpsc::Receiver<ConfirmationJob>,
    mailer: Arc<dyn ConfirmationMailer>,
) {
    while let Some(job) = queued.recv().await {
        let span = tracing::info_span!("confirmation_mail");
        if let Err(e) = mailer
            .send_confirmation(&job.email, job.name.as_deref(), &job.confirm_url)
            .instrument(span)
            .await
        {
            tracing::error!(error = %e, "signup: confirmation email not sent");
        }
    }
}

/// Forgets visitors whose limit has refilled, every minute, so that the
/// limiter's memory follows the visitors of the last minute, not of all time.
async fn prune_visitors(limiter: Arc<DefaultKeyedRateLimiter<IpAddr>>, stop: CancellationToken) {
    let mut every = tokio::time::interval(Duration::from_secs(60));
    loop {
        tokio::select! {
            _ = every.tick() => {
                limiter.retain_recent();
                limiter.shrink_to_fit();
            }
            _ = stop.cancelled() => return,
        }
    }
}

/// The visitor a request comes from (behind trusted proxies, the one they
/// name), as per-visitor limits key it.
fn visitor(state: &AppState, peer: SocketAddr, headers: &axum::http::HeaderMap) -> IpAddr {
    let forwarded = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok());
    client::rate_key(client::client_ip(
        peer.ip(),
        forwarded,
        &state.settings.trusted_proxies,
    ))
}
