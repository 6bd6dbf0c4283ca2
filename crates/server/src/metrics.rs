//! `GET /metrics` in the Prometheus text format.
//!
//! HTTP requests are counted as they happen; delivery figures are read at
//! scrape time from the in-process worker (if any) and from the store, so
//! several workers sharing one database still give a true queue depth.
//!
//! The endpoint is not public: it answers only a request that carries
//! `Authorization: Bearer <server.metrics_token>` (404 for anyone else,
//! and for everyone while no token is set), since queue depths and request
//! counts tell an outsider more than they should. The figures read from the
//! database count every delivery; they are cached for [`DB_FIGURES_TTL`]
//! and refreshed by one scrape at a time, so that scrapes cannot hold the
//! connections unsubscribes need.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use letterpress_core::SubscriberStatus;
use letterpress_store::{BounceKind, IssueCounts};
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::AppState;

type Labels = Vec<(&'static str, String)>;

/// What an in-process delivery worker has done since it started.
#[derive(Debug, Clone, Copy, Default)]
pub struct WorkerSnapshot {
    /// Messages accepted.
    pub sent: u64,
    /// Attempts deferred.
    pub deferred: u64,
    /// Deliveries failed for good.
    pub failed: u64,
    /// Hard bounces.
    pub bounced: u64,
    /// Skipped (subscriber no longer active).
    pub skipped: u64,
    /// SMTP replies by class: 2xx, 4xx, 5xx, none (network).
    pub replies: [u64; 4],
}

/// Reads a worker's counters; implemented by the binary over the sender.
pub trait WorkerStats: Send + Sync {
    /// The counters now.
    fn snapshot(&self) -> WorkerSnapshot;
}

/// What an in-process scheduler has done since it started.
#[derive(Debug, Clone, Copy, Default)]
pub struct SchedulerSnapshot {
    /// Passes that ended without error.
    pub ok: u64,
    /// Passes that ended with an error (their issues stay due).
    pub failed: u64,
    /// Issues the scheduler published.
    pub published: u64,
    /// When the last pass ended, unix seconds (0 before the first).
    pub last_tick_unix: i64,
}

/// Reads the scheduler's counters; implemented by the binary.
pub trait SchedulerStats: Send + Sync {
    /// The counters now.
    fn snapshot(&self) -> SchedulerSnapshot;
}

/// The server's metrics.
pub(crate) struct Metrics {
    registry: Registry,
    http: Family<Labels, Counter>,
    unsubscribes: Counter,
    attempts: Family<Labels, Gauge>,
    replies: Family<Labels, Gauge>,
    queue: Family<Labels, Gauge>,
    subscribers: Family<Labels, Gauge>,
    bounces: Family<Labels, Gauge>,
    scheduler_ticks: Family<Labels, Gauge>,
    scheduler_published: Gauge,
    scheduler_last_tick: Gauge,
    worker: Option<Arc<dyn WorkerStats>>,
    scheduler: Option<Arc<dyn SchedulerStats>>,
    /// The database figures of the last refresh, and when it was made.
    db_figures: tokio::sync::Mutex<Option<(Instant, DbFigures)>>,
}

/// How long the figures read from the database are served before a scrape
/// reads them again.
pub(crate) const DB_FIGURES_TTL: Duration = Duration::from_secs(5);

/// What the database says, read together.
#[derive(Debug, Clone, Default)]
struct DbFigures {
    issues: Vec<IssueCounts>,
    subscribers: Vec<(SubscriberStatus, u64)>,
    /// Bounce events recorded, by source and kind.
    bounces: Vec<(String, BounceKind, u64)>,
}

impl Metrics {
    /// A registry with every metric.
    pub(crate) fn new(
        worker: Option<Arc<dyn WorkerStats>>,
        scheduler: Option<Arc<dyn SchedulerStats>>,
    ) -> Self {
        let mut registry = Registry::with_prefix("letterpress");
        let http = Family::<Labels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests by route and status",
            http.clone(),
        );
        let unsubscribes = Counter::default();
        registry.register(
            "unsubscribes",
            "Unsubscribes taken by this server",
            unsubscribes.clone(),
        );
        let attempts = Family::<Labels, Gauge>::default();
        registry.register(
            "worker_attempts",
            "Delivery attempts by this process's worker, by outcome (rate() of sent is the send rate)",
            attempts.clone(),
        );
        let replies = Family::<Labels, Gauge>::default();
        registry.register("smtp_replies", "SMTP replies by class", replies.clone());
        let queue = Family::<Labels, Gauge>::default();
        registry.register(
            "deliveries",
            "Deliveries in the store by status",
            queue.clone(),
        );
        let subscribers = Family::<Labels, Gauge>::default();
        registry.register("subscribers", "Subscribers by status", subscribers.clone());
        let bounces = Family::<Labels, Gauge>::default();
        registry.register(
            "bounce_events",
            "Bounces, complaints and unsubscribe requests reported after acceptance (webhooks, DSNs, ARF), by kind (every source together)",
            bounces.clone(),
        );
        let scheduler_ticks = Family::<Labels, Gauge>::default();
        let scheduler_published = Gauge::default();
        let scheduler_last_tick = Gauge::default();
        if scheduler.is_some() {
            registry.register(
                "scheduler_ticks",
                "Scheduler passes since start, by result (a failed pass leaves its issues due)",
                scheduler_ticks.clone(),
            );
            registry.register(
                "scheduler_published",
                "Issues the scheduler published since start",
                scheduler_published.clone(),
            );
            registry.register(
                "scheduler_last_tick_timestamp_seconds",
                "When the scheduler's last pass ended (unix time)",
                scheduler_last_tick.clone(),
            );
        }
        Self {
            registry,
            http,
            unsubscribes,
            attempts,
            replies,
            queue,
            subscribers,
            bounces,
            scheduler_ticks,
            scheduler_published,
            scheduler_last_tick,
            worker,
            scheduler,
            db_figures: tokio::sync::Mutex::new(None),
        }
    }

    /// Counts one answered request.
    pub(crate) fn http_request(&self, route: &str, status: u16) {
        self.http
            .get_or_create(&vec![
                ("route", route.to_string()),
                ("status", status.to_string()),
            ])
            .inc();
    }

    /// Counts one unsubscribe.
    pub(crate) fn unsubscribed(&self) {
        self.unsubscribes.inc();
    }

    fn set(family: &Family<Labels, Gauge>, key: &'static str, value: &str, n: u64) {
        family
            .get_or_create(&vec![(key, value.to_string())])
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }
}

/// `GET /metrics`.
pub(crate) async fn render(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let authorised = state
        .settings
        .metrics_token
        .as_deref()
        .is_some_and(|token| {
            headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .is_some_and(|given| {
                    letterpress_signing::same_secret(token.as_bytes(), given.trim().as_bytes())
                })
        });
    if !authorised {
        return StatusCode::NOT_FOUND.into_response();
    }
    let m = &state.metrics;
    if let Some(w) = &m.worker {
        let s = w.snapshot();
        for (outcome, n) in [
            ("sent", s.sent),
            ("deferred", s.deferred),
            ("failed", s.failed),
            ("bounced", s.bounced),
            ("skipped", s.skipped),
        ] {
            Metrics::set(&m.attempts, "outcome", outcome, n);
        }
        for (class, n) in ["2xx", "4xx", "5xx", "none"].into_iter().zip(s.replies) {
            Metrics::set(&m.replies, "class", class, n);
        }
    }
    if let Some(s) = &m.scheduler {
        let s = s.snapshot();
        Metrics::set(&m.scheduler_ticks, "result", "ok", s.ok);
        Metrics::set(&m.scheduler_ticks, "result", "failed", s.failed);
        m.scheduler_published
            .set(i64::try_from(s.published).unwrap_or(i64::MAX));
        m.scheduler_last_tick.set(s.last_tick_unix);
    }
    let figures = db_figures(&state).await;
    let sum = |f: fn(&IssueCounts) -> u64| figures.issues.iter().map(f).sum::<u64>();
    Metrics::set(&m.queue, "status", "queued", sum(|c| c.queued));
    Metrics::set(&m.queue, "status", "deferred", sum(|c| c.deferred));
    Metrics::set(&m.queue, "status", "sending", sum(|c| c.sending));
    Metrics::set(&m.queue, "status", "sent", sum(|c| c.sent));
    Metrics::set(&m.queue, "status", "failed", sum(|c| c.failed));
    Metrics::set(&m.queue, "status", "skipped", sum(|c| c.skipped));
    for (status, n) in &figures.subscribers {
        Metrics::set(&m.subscribers, "status", status.as_str(), *n);
    }
    // Every kind is listed, zero included, so a rate() has a series from
    // the start.
    for kind in BounceKind::ALL {
        let n: u64 = figures
            .bounces
            .iter()
            .filter(|(_, k, _)| *k == kind)
            .map(|(_, _, n)| n)
            .sum();
        Metrics::set(&m.bounces, "kind", kind.as_str(), n);
    }
    let mut body = String::new();
    if let Err(e) = encode(&mut body, &m.registry) {
        tracing::error!(error = %e, "metrics encoding");
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

/// The database figures, read at most once per [`DB_FIGURES_TTL`]: the lock
/// makes concurrent scrapes wait for one refresh instead of each running
/// the counts. A failed read keeps the last figures (logged).
async fn db_figures(state: &AppState) -> DbFigures {
    let mut cached = state.metrics.db_figures.lock().await;
    if let Some((at, figures)) = cached.as_ref()
        && at.elapsed() < DB_FIGURES_TTL
    {
        return figures.clone();
    }
    let mut figures = cached.as_ref().map(|(_, f)| f.clone()).unwrap_or_default();
    match state.store.issue_counts(None).await {
        Ok(counts) => figures.issues = counts,
        Err(e) => tracing::warn!(error = %e, "metrics: issue counts"),
    }
    match state.store.count_by_status().await {
        Ok(counts) => figures.subscribers = counts,
        Err(e) => tracing::warn!(error = %e, "metrics: subscriber counts"),
    }
    match state.store.bounce_event_counts().await {
        Ok(counts) => figures.bounces = counts,
        Err(e) => tracing::warn!(error = %e, "metrics: bounce event counts"),
    }
    *cached = Some((Instant::now(), figures.clone()));
    figures
}
