//! `letterpress serve`: HTTP server, scheduler and delivery worker in one
//! process, wired together here (the server crate knows neither of the
//! other two; it is handed their counters and a mailer).

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context;
use chrono::Utc;
use letterpress_publish::schedule::{self, Schedule, TickStats};
use letterpress_sender::{MessageSettings, Progress, Transport, Until};
use letterpress_server::{
    AllowedOrigins, AppState, BoxFuture, ConfirmationMailer, HttpLimits, MailerError,
    SchedulerSnapshot, SchedulerStats, ServerSettings, SignupRedirect, TrustedProxies,
    WorkerSnapshot, WorkerStats,
};
use letterpress_store::SignupLimits;

use crate::config::Config;
use crate::{shutdown, wiring};

/// The sender's counters, as the server's metrics read them.
struct ProgressStats(Arc<Progress>);

impl WorkerStats for ProgressStats {
    fn snapshot(&self) -> WorkerSnapshot {
        let p = &self.0;
        let l = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
        WorkerSnapshot {
            sent: l(&p.sent),
            deferred: l(&p.deferred),
            failed: l(&p.failed),
            bounced: l(&p.bounced),
            skipped: l(&p.skipped),
            replies: [
                l(&p.replies[0]),
                l(&p.replies[1]),
                l(&p.replies[2]),
                l(&p.replies[3]),
            ],
        }
    }
}

/// The scheduler's counters, as the server's metrics read them.
struct TickCounters(Arc<TickStats>);

impl SchedulerStats for TickCounters {
    fn snapshot(&self) -> SchedulerSnapshot {
        let t = &self.0;
        SchedulerSnapshot {
            ok: t.ok.load(Ordering::Relaxed),
            failed: t.failed.load(Ordering::Relaxed),
            published: t.published.load(Ordering::Relaxed),
            last_tick_unix: t.last_tick_unix.load(Ordering::Relaxed),
        }
    }
}

/// Sends signup confirmations through the delivery transport, built by
/// the sender's message code like every issue (From, Message-ID domain,
/// DKIM).
struct Mailer {
    transport: Transport,
    settings: Arc<MessageSettings>,
}

impl ConfirmationMailer for Mailer {
    fn send_confirmation<'a>(
        &'a self,
        email: &'a str,
        name: Option<&'a str>,
        confirm_url: &'a str,
    ) -> BoxFuture<'a, Result<(), MailerError>> {
        Box::pin(async move {
            let built = self.settings.confirmation(email, name, confirm_url)?;
            let stem = format!(
                "{}-{}",
                Utc::now().format("%Y%m%dT%H%M%S%.6f"),
                rand::random::<u32>()
            );
            let attempt = self
                .transport
                .send(&built.message, "confirmations", &stem)
                .await;
            match attempt.verdict() {
                letterpress_sender::Verdict::Delivered => Ok(()),
                _ => Err(attempt.reply.into()),
            }
        })
    }
}

/// `letterpress serve`: HTTP server, scheduler and delivery worker, until
/// SIGTERM or Ctrl-C; then stops accepting, finishes requests and messages
/// in flight, and records their outcomes.
pub(crate) async fn serve(config: &Config) -> anyhow::Result<ExitCode> {
    let store = wiring::open_store(config).await?;
    let keyring = wiring::keyring(config)?;
    let webhook_key = config
        .webhook_secret()?
        .map(|s| letterpress_signing::WebhookKey::new(s.as_bytes()))
        .transpose()?;
    if webhook_key.is_none() {
        crate::logging::notice(
            "note: LETTERPRESS_SERVER__WEBHOOK_SECRET is not set; webhooks will answer 401",
        );
    }
    let worker = wiring::queue_worker(config, &store)?;
    let bounce_mailbox = crate::commands::bounces::Poller::new(config)?;
    let schedule = if config.schedule.cron.trim().is_empty() {
        None
    } else {
        Some(Schedule::parse(
            &config.schedule.cron,
            &config.schedule.timezone,
        )?)
    };
    let ticks = Arc::new(TickStats::default());
    let mailer = Arc::new(Mailer {
        transport: wiring::transport(config)?,
        settings: Arc::new(wiring::message_settings(config, keyring.clone())?),
    });
    let state = AppState::new(
        store.clone(),
        ServerSettings {
            newsletter_name: config.newsletter.name.clone(),
            public_url: config.server.public_url.clone(),
            keyring,
            webhook_key,
            soft_bounce_limit: config.server.soft_bounce_limit,
            signup_per_minute: config.server.signup_per_minute,
            signup_limits: SignupLimits::default(),
            confirm_ttl: Duration::from_secs(7 * 86400),
            trusted_proxies: TrustedProxies::parse(&config.server.trusted_proxies)
                .context("server.trusted_proxies")?,
            allowed_origins: AllowedOrigins::parse(&config.server.allowed_origins)
                .context("server.allowed_origins")?,
            signup_redirect: config
                .server
                .signup_redirect
                .as_deref()
                .map(SignupRedirect::parse)
                .transpose()
                .context("server.signup_redirect")?,
            http: HttpLimits {
                header_timeout: config.server.header_timeout,
                request_timeout: config.server.request_timeout,
                max_connections: config.server.max_connections,
            },
            metrics_token: config.metrics_token()?,
            providers: wiring::providers(config)?,
        },
        Arc::clone(&mailer) as Arc<dyn ConfirmationMailer>,
        Some(Arc::new(ProgressStats(worker.progress()))),
        schedule
            .is_some()
            .then(|| Arc::new(TickCounters(Arc::clone(&ticks))) as Arc<dyn SchedulerStats>),
    );
    let listener = tokio::net::TcpListener::bind(&config.server.bind)
        .await
        .with_context(|| format!("server.bind {}: cannot listen", config.server.bind))?;
    let local = listener.local_addr()?;
    // Tests and operators read this line to know where we listen (bind may say port 0).
    crate::logging::notice(&format!("listening on http://{local}"));

    let stop = shutdown::on_signal();
    let scheduler_task = schedule.map(|schedule| {
        // The layout is read here once, to say at start-up when it is
        // unusable; issues are composed in child processes (see
        // `commands::compose`), where a crash cannot take the server down.
        let composer =
            wiring::composer(config).and_then(|_| super::compose::ChildComposer::new(config));
        let store = store.clone();
        let dir = config.schedule.issues_dir.clone();
        let stop = stop.clone();
        let ticks = Arc::clone(&ticks);
        tokio::spawn(async move {
            let composer = match composer {
                Ok(c) => c,
                Err(e) => {
                    tracing::error!(error = %format!("{e:#}"), "scheduler disabled");
                    return;
                }
            };
            schedule::run(schedule, stop, || async {
                let result = schedule::tick(&dir, &composer, &store).await;
                ticks.record(&result);
                if let Err(e) = result {
                    tracing::error!(error = %e, "scheduler tick failed; its due issues stay due");
                }
            })
            .await;
        })
    });
    // The bounce mailbox, when one is configured, every bounces.interval.
    let bounces_task = bounce_mailbox.map(|poller| {
        tokio::spawn(crate::commands::bounces::poll(
            poller,
            store.clone(),
            stop.clone(),
        ))
    });
    let worker_task = {
        let worker = Arc::clone(&worker);
        let stop = stop.clone();
        tokio::spawn(async move { worker.run(Until::Stopped, stop).await })
    };
    // One stop for all three parts: the listener closes, requests in
    // progress finish, the worker claims nothing more and finishes the
    // messages in flight, all at once. The server gets the same grace as
    // the worker: a client that never finishes its request must not keep
    // the process (and the messages' outcomes) hanging.
    let grace = config.delivery.shutdown_grace;
    let served = {
        let server = letterpress_server::serve(listener, state, stop.clone());
        tokio::pin!(server);
        tokio::select! {
            r = &mut server => r,
            _ = async { stop.cancelled().await; tokio::time::sleep(grace).await } => {
                tracing::warn!("shutdown grace over; closing HTTP requests still open");
                Ok(())
            }
        }
    };
    stop.cancel();
    if let Some(t) = scheduler_task {
        let _ = t.await;
    }
    if let Some(t) = bounces_task {
        let _ = t.await;
    }
    let worked = worker_task.await.context("worker task")?;
    // Requests are over: the confirmations' pooled connections get a QUIT.
    mailer.transport.shutdown().await;
    store.close().await;
    served.context("HTTP server")?;
    worked.context("delivery worker")?;
    crate::logging::notice("stopped");
    Ok(ExitCode::SUCCESS)
}
