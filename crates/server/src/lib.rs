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
//! | `POST /subscribe`, `GET`/`POST /confirm/{token}` | double opt-in signup |
//! | `GET /healthz`, `GET /metrics` | operations |
//!
//! GET never changes anything: mail security scanners fetch every link in
//! a message, and an unsubscribe or confirmation on GET would fire for them.

mod metrics;
mod pages;
mod signup;
mod unsubscribe;
mod webhooks;

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use letterpress_signing::Keyring;
use letterpress_store::Store;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use metrics::Metrics;
pub use metrics::{SchedulerSnapshot, SchedulerStats, WorkerSnapshot, WorkerStats};
pub use signup::{BoxFuture, ConfirmationMailer};

/// Webhook bodies larger than this are refused with 413.
pub const WEBHOOK_BODY_LIMIT: usize = 64 * 1024;

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
    pub webhook_secret: Option<Vec<u8>>,
    /// Soft bounces in a row that suppress a subscriber.
    pub soft_bounce_limit: u32,
    /// Signups accepted per client address per minute.
    pub signup_per_minute: u32,
    /// How long a confirmation link stays valid.
    pub confirm_ttl: Duration,
}

/// Shared by every request.
#[derive(Clone)]
pub struct AppState {
    store: Store,
    settings: Arc<ServerSettings>,
    mailer: Arc<dyn ConfirmationMailer>,
    metrics: Arc<Metrics>,
    signup_limiter: Arc<DefaultKeyedRateLimiter<std::net::IpAddr>>,
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
        Self {
            store,
            settings: Arc::new(settings),
            mailer,
            metrics: Arc::new(Metrics::new(worker, scheduler)),
            signup_limiter: Arc::new(RateLimiter::keyed(Quota::per_minute(per_minute))),
        }
    }
}

/// The application's routes.
pub fn router(state: AppState) -> Router {
    let webhooks = Router::new()
        .route("/webhooks/unsubscribe", post(webhooks::unsubscribe))
        .route("/webhooks/bounce", post(webhooks::bounce))
        .layer(DefaultBodyLimit::max(WEBHOOK_BODY_LIMIT));
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
        // Forms and one-click bodies are tiny; refuse anything large early.
        .layer(DefaultBodyLimit::max(WEBHOOK_BODY_LIMIT))
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state)
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
/// finishes the requests in progress.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    stop: CancellationToken,
) -> std::io::Result<()> {
    let app = router(state).into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { stop.cancelled().await })
        .await
}
