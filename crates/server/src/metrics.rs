//! `GET /metrics` in the Prometheus text format.
//!
//! HTTP requests are counted as they happen; delivery figures are read at
//! scrape time from the in-process worker (if any) and from the store, so
//! several workers sharing one database still give a true queue depth.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
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
    scheduler_ticks: Family<Labels, Gauge>,
    scheduler_published: Gauge,
    scheduler_last_tick: Gauge,
    worker: Option<Arc<dyn WorkerStats>>,
    scheduler: Option<Arc<dyn SchedulerStats>>,
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
            scheduler_ticks,
            scheduler_published,
            scheduler_last_tick,
            worker,
            scheduler,
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
pub(crate) async fn render(State(state): State<AppState>) -> Response {
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
    match state.store.issue_counts(None).await {
        Ok(counts) => {
            let sum =
                |f: fn(&letterpress_store::IssueCounts) -> u64| counts.iter().map(f).sum::<u64>();
            Metrics::set(&m.queue, "status", "queued", sum(|c| c.queued));
            Metrics::set(&m.queue, "status", "deferred", sum(|c| c.deferred));
            Metrics::set(&m.queue, "status", "sending", sum(|c| c.sending));
            Metrics::set(&m.queue, "status", "sent", sum(|c| c.sent));
            Metrics::set(&m.queue, "status", "failed", sum(|c| c.failed));
            Metrics::set(&m.queue, "status", "skipped", sum(|c| c.skipped));
        }
        Err(e) => tracing::warn!(error = %e, "metrics: issue counts"),
    }
    match state.store.count_by_status().await {
        Ok(counts) => {
            for (status, n) in counts {
                Metrics::set(&m.subscribers, "status", status.as_str(), n);
            }
        }
        Err(e) => tracing::warn!(error = %e, "metrics: subscriber counts"),
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
