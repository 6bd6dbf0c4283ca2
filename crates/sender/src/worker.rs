//! The queue worker: claim due deliveries under a lease, send them with
//! bounded concurrency and rate, record the outcomes in batches.
//!
//! Crash safety comes from the order of things: a claim is committed
//! before anything is sent, and an outcome is recorded as soon as the
//! recorder gets to it. A worker killed mid-send therefore loses only the
//! outcomes of messages in flight (and not yet recorded); their leases
//! expire and the next worker sends those again. Claimed messages that were
//! never started are given back on a graceful stop.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use chrono::Utc;
use letterpress_composer::StoredIssueError;
use letterpress_core::SubscriberStatus;
use letterpress_store::{Claim, Outcome, OutcomeKind, Store, StoreError};
use tokio::sync::{Mutex, Semaphore, mpsc, oneshot};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::build_pool::BuildPool;
use crate::leases::Held;
use crate::message::{Built, IssueMessages, MessageError, To};
use crate::policy::{self, Decided, Facts, Happened};
use crate::retry::RetryPolicy;
use crate::status_gate::StatusGate;
use crate::throttle::Throttle;
use crate::transport::{Transport, outbox_file_stem};

/// Why the worker stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// The database failed; the worker cannot know what it claimed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why an [`IssueLoader`] cannot give the worker an issue. The worker
/// defers the delivery: another worker, or this one later, may have it.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The store could not be read.
    #[error("cannot read issue {issue_id}: {source}")]
    Store {
        /// The issue.
        issue_id: i64,
        /// The store's error.
        source: StoreError,
    },
    /// The store has no content for the issue.
    #[error("issue {0} has no stored content")]
    NoContent(i64),
    /// The stored content cannot be read, e.g. it was stored by a newer
    /// version.
    #[error("issue {issue_id}'s stored content cannot be read: {source}")]
    Unreadable {
        /// The issue.
        issue_id: i64,
        /// Why.
        source: StoredIssueError,
    },
    /// This loader carries one issue only (`send`), and not this one.
    #[error("this sender only carries issue {carries}, not issue {issue_id}")]
    NotCarried {
        /// The issue asked for.
        issue_id: i64,
        /// The one it carries.
        carries: i64,
    },
}

/// A boxed future, for [`IssueLoader`].
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Gives the worker the prepared messages of an issue it finds in the queue.
///
/// `send` hands over the issue it just composed; `worker` and `serve` load
/// an issue from the store the first time they meet it.
pub trait IssueLoader: Send + Sync {
    /// The issue with this id, or why it cannot be had.
    fn load(&self, issue_id: i64) -> BoxFuture<'_, Result<Arc<IssueMessages>, LoadError>>;
}

/// Tuning of one worker.
#[derive(Debug, Clone)]
pub struct WorkerSettings {
    /// Names the leases this worker holds (`host:pid:random`).
    pub worker_id: String,
    /// Messages in flight at most (`delivery.concurrency`).
    pub concurrency: u32,
    /// Deliveries claimed at once. Kept small relative to the rate so a
    /// lease never runs out while its batch waits for rate tokens.
    pub batch_size: u32,
    /// How long a claim is held before another worker may take it over.
    pub lease: Duration,
    /// The retry schedule.
    pub retry: RetryPolicy,
    /// How often an idle worker looks for due deliveries.
    pub poll_interval: Duration,
    /// How long a stopping worker waits for messages in flight.
    pub shutdown_grace: Duration,
    /// How long the worker waits for a database that went away (a
    /// PostgreSQL restart) before it gives up (`delivery.database_outage`).
    pub database_outage: Duration,
    /// Threads that build and sign messages at once, beside the event loop
    /// that drives the connections (see [`Worker::build`]); the binary
    /// gives it the number of cores.
    pub build_threads: usize,
}

/// Counters a progress display or `/metrics` reads while the worker runs.
#[derive(Debug, Default)]
pub struct Progress {
    /// Accepted by the server (or written to the outbox).
    pub sent: AtomicU64,
    /// Deferred for a later retry.
    pub deferred: AtomicU64,
    /// Failed for good (5xx other than a bounce, or too old).
    pub failed: AtomicU64,
    /// Hard bounces (the subscriber is now `bounced`).
    pub bounced: AtomicU64,
    /// Skipped because the subscriber was no longer active.
    pub skipped: AtomicU64,
    /// SMTP replies by class: 2xx, 4xx, 5xx, and no reply (network).
    pub replies: [AtomicU64; 4],
}

impl Progress {
    /// Every settled or deferred attempt counted so far.
    pub fn attempts(&self) -> u64 {
        [
            &self.sent,
            &self.deferred,
            &self.failed,
            &self.bounced,
            &self.skipped,
        ]
        .iter()
        .map(|c| c.load(Ordering::Relaxed))
        .sum()
    }
}

/// When [`Worker::run`] returns.
#[derive(Debug, Clone, Copy)]
pub enum Until {
    /// When every delivery of the issue is settled, or at the deadline,
    /// whichever comes first (`letterpress send`).
    Settled {
        /// The issue.
        issue_id: i64,
        /// When to stop waiting for deferred deliveries.
        deadline: Instant,
    },
    /// Only when stopped (`letterpress worker`, `serve`).
    Stopped,
}

/// A delivery worker.
pub struct Worker {
    store: Store,
    transport: Arc<Transport>,
    throttle: Arc<Throttle>,
    settings: WorkerSettings,
    loader: Arc<dyn IssueLoader>,
    issues: Mutex<HashMap<i64, Arc<IssueMessages>>>,
    progress: Arc<Progress>,
    /// Deliveries claimed and not yet recorded: the leases
    /// [`Worker::keep_leases`] renews (see `leases.rs`).
    held: Arc<Held>,
    /// Answers the last look at each recipient's status (started on first use,
    /// inside the runtime).
    gate: OnceLock<StatusGate>,
    /// Messages being sent: at most `concurrency`.
    connections: Semaphore,
    /// The threads that build signed messages (started on the first).
    builders: OnceLock<BuildPool>,
}

/// The most outcomes written in one transaction.
const GROUP_MAX: usize = 1000;
/// How long the first outcome of a batch waits for others (see
/// [`record_outcomes`]).
const GROUP_WAIT: Duration = Duration::from_millis(2);

enum Record {
    Outcome(Outcome),
    Flush(oneshot::Sender<()>),
}

impl Worker {
    /// A worker over `store` sending through `transport`.
    pub fn new(
        store: Store,
        transport: Arc<Transport>,
        throttle: Arc<Throttle>,
        settings: WorkerSettings,
        loader: Arc<dyn IssueLoader>,
    ) -> Self {
        Self {
            store,
            transport,
            throttle,
            loader,
            issues: Mutex::new(HashMap::new()),
            progress: Arc::new(Progress::default()),
            held: Arc::new(Held::new()),
            gate: OnceLock::new(),
            connections: Semaphore::new(settings.concurrency.max(1) as usize),
            builders: OnceLock::new(),
            settings,
        }
    }

    /// The live counters.
    pub fn progress(&self) -> Arc<Progress> {
        Arc::clone(&self.progress)
    }

    /// Runs until `until` or until `stop` is cancelled. On stop, claims
    /// nothing more, waits up to `shutdown_grace` for messages in flight,
    /// records their outcomes and gives back the leases of the rest.
    pub async fn run(
        self: &Arc<Self>,
        until: Until,
        stop: CancellationToken,
    ) -> Result<(), WorkerError> {
        let scope = match until {
            Until::Settled { issue_id, .. } => Some(issue_id),
            Until::Stopped => None,
        };
        let (tx, rx) = mpsc::channel::<Record>(4096);
        let recorder = tokio::spawn(record_outcomes(
            self.store.clone(),
            rx,
            self.settings.database_outage,
            Arc::clone(&self.held),
        ));
        // Twice as many messages are prepared as may be sent at once, so
        // that a connection finishing one message finds the next one built.
        let permits = Arc::new(Semaphore::new(
            2 * self.settings.concurrency.max(1) as usize,
        ));
        let mut in_flight = JoinSet::new();
        let keeper = tokio::spawn(Arc::clone(self).keep_leases());
        let result = self
            .claim_loop(scope, until, &stop, &tx, &permits, &mut in_flight)
            .await;

        // Let messages in flight finish (bounded), so their outcomes are
        // recorded rather than re-sent by the next worker.
        let grace = tokio::time::sleep(self.settings.shutdown_grace);
        tokio::pin!(grace);
        loop {
            tokio::select! {
                next = in_flight.join_next() => if next.is_none() { break },
                _ = &mut grace => {
                    tracing::warn!(left = in_flight.len(), "shutdown grace over; abandoning messages in flight");
                    in_flight.abort_all();
                    break;
                }
            }
        }
        keeper.abort();
        flush(&tx).await;
        drop(tx);
        let _ = recorder.await;
        // QUIT the pooled connections: a relay logs a connection dropped
        // without one as a lost client.
        self.transport.shutdown().await;
        let released = ride_out("give back leases", self.settings.database_outage, || {
            self.store.release_leases(&self.settings.worker_id)
        })
        .await?;
        if released > 0 {
            tracing::info!(released, "gave back claimed deliveries that were not sent");
        }
        result
    }

    async fn claim_loop(
        self: &Arc<Self>,
        scope: Option<i64>,
        until: Until,
        stop: &CancellationToken,
        tx: &mpsc::Sender<Record>,
        permits: &Arc<Semaphore>,
        in_flight: &mut JoinSet<()>,
    ) -> Result<(), WorkerError> {
        // The claim of the next batch, made while this one goes out: a claim
        // is a write transaction, and connections would idle while it ran.
        let mut next: Option<tokio::task::JoinHandle<Result<Vec<Claim>, StoreError>>> = None;
        while !stop.is_cancelled() {
            // Reap finished tasks so the set does not grow with the list.
            while in_flight.try_join_next().is_some() {}
            let claims = match next.take() {
                Some(claiming) => match claiming.await {
                    Ok(claims) => claims?,
                    Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                    Err(_) => Vec::new(),
                },
                None => self.claim(scope).await?,
            };
            if claims.is_empty() {
                if !self.idle(until, stop, tx, in_flight).await? {
                    return Ok(());
                }
                continue;
            }
            next = Some(tokio::spawn(Arc::clone(self).claim_owned(scope)));
            let span = tracing::info_span!("delivery_batch", claimed = claims.len());
            async {
                for claim in claims {
                    // Biased, stop first: once stopped, a permit freed by a
                    // finishing message must not start another one.
                    let permit = tokio::select! {
                        biased;
                        _ = stop.cancelled() => return,
                        p = Arc::clone(permits).acquire_owned() => p.expect("semaphore is never closed"),
                    };
                    let this = Arc::clone(self);
                    let tx = tx.clone();
                    let stop = stop.clone();
                    in_flight.spawn(async move {
                        if let Some(outcome) = this.deliver(claim, &stop).await {
                            // Held until the recorder has written it (and
                            // cleared its lease with it).
                            let _ = tx.send(Record::Outcome(outcome)).await;
                        }
                        drop(permit);
                    });
                }
            }
            .instrument(span)
            .await;
        }
        // Stopped: let a claim under way finish, so that `run` gives its
        // leases back too instead of leaving them to run out.
        if let Some(claiming) = next {
            let _ = claiming.await;
        }
        Ok(())
    }

    /// Claims the next batch of due deliveries and keeps their leases.
    /// Rides out a database that is briefly unavailable.
    async fn claim(&self, scope: Option<i64>) -> Result<Vec<Claim>, StoreError> {
        let claims = ride_out(
            "claim deliveries",
            self.settings.database_outage,
            || async {
                // Back from an outage: the leases held here may have run out,
                // and the claim would take their deliveries back as a dead
                // worker's, the ones sent meanwhile (their outcomes waiting
                // for the database) included. Renewed first, they stay ours.
                if self.held.may_run_out(self.settings.lease, Instant::now()) {
                    self.renew_held().await?;
                }
                self.store
                    .claim_due(
                        &self.settings.worker_id,
                        scope,
                        self.settings.batch_size.max(1),
                        self.settings.lease,
                        Utc::now(),
                    )
                    .await
            },
        )
        .await?;
        self.held.hold(claims.iter().map(|c| c.delivery_id));
        Ok(claims)
    }

    /// Renews the lease of every delivery held, for a whole lease from now.
    async fn renew_held(&self) -> Result<(), StoreError> {
        let started = Instant::now();
        let ids = self.held.ids();
        if !ids.is_empty() {
            let span = tracing::debug_span!("renew_leases", n = ids.len());
            self.store
                .renew_leases(
                    &self.settings.worker_id,
                    &ids,
                    self.settings.lease,
                    Utc::now(),
                )
                .instrument(span)
                .await?;
        }
        self.held.renewed(started);
        Ok(())
    }

    /// [`Worker::claim`] for a task of its own. Should the worker stop
    /// before sending them, `run` gives their leases back with the rest.
    async fn claim_owned(self: Arc<Self>, scope: Option<i64>) -> Result<Vec<Claim>, StoreError> {
        self.claim(scope).await
    }

    /// Renews the leases of the deliveries held every third of a lease,
    /// for as long as the worker runs: a batch that waits for the rate
    /// limit or a slow relay longer than one lease stays this worker's, and
    /// another worker takes over only the claims of a worker that died
    /// (whose leases nobody renews), or of one cut off from the database
    /// for longer than its leases hold.
    async fn keep_leases(self: Arc<Self>) {
        let lease = self.settings.lease;
        let every = (lease / 3).max(Duration::from_millis(50));
        let mut tick = tokio::time::interval_at(Instant::now() + every, every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(e) = self.renew_held().await {
                tracing::warn!(
                    error = %e,
                    "cannot renew leases; another worker may take over deliveries claimed here"
                );
            }
        }
    }

    /// Nothing is due. Returns whether to keep going.
    async fn idle(
        &self,
        until: Until,
        stop: &CancellationToken,
        tx: &mpsc::Sender<Record>,
        in_flight: &mut JoinSet<()>,
    ) -> Result<bool, WorkerError> {
        let wake = match until {
            Until::Stopped => Instant::now() + self.settings.poll_interval,
            Until::Settled { issue_id, deadline } => {
                // Settle what is in flight and recorded before judging.
                while in_flight.join_next().await.is_some() {}
                flush(tx).await;
                let counts = ride_out("count deliveries", self.settings.database_outage, || {
                    self.store.issue_counts_by_id(issue_id)
                })
                .await?;
                let unsettled = counts
                    .as_ref()
                    .map(|c| c.queued + c.deferred + c.sending)
                    .unwrap_or(0);
                if unsettled == 0 || Instant::now() >= deadline {
                    return Ok(false);
                }
                // Ours are all settled, so anything leased is another
                // worker's (`serve`, `worker`): its outcomes come in at any
                // moment, not at the lease's end, so look again soon.
                let leased_elsewhere = counts.is_some_and(|c| c.sending > 0);
                let cap = if leased_elsewhere {
                    self.settings.poll_interval
                } else {
                    self.settings.poll_interval.max(Duration::from_secs(1)) * 30
                };
                let next_due = ride_out(
                    "find the next due delivery",
                    self.settings.database_outage,
                    || self.store.next_due_at(Some(issue_id)),
                )
                .await?;
                let until_due = next_due
                    .and_then(|t| (t - Utc::now()).to_std().ok())
                    .unwrap_or(Duration::ZERO)
                    .max(Duration::from_millis(50))
                    .min(cap);
                (Instant::now() + until_due).min(deadline)
            }
        };
        tokio::select! {
            _ = tokio::time::sleep_until(wake) => Ok(true),
            _ = stop.cancelled() => Ok(false),
        }
    }

    async fn issue(&self, issue_id: i64) -> Result<Arc<IssueMessages>, LoadError> {
        let mut cache = self.issues.lock().await;
        if let Some(i) = cache.get(&issue_id) {
            return Ok(Arc::clone(i));
        }
        let loaded = self.loader.load(issue_id).await?;
        cache.insert(issue_id, Arc::clone(&loaded));
        Ok(loaded)
    }

    /// One attempt at one delivery. Never fails: every way it can go wrong
    /// is an outcome to record.
    /// `None` when the worker stopped before the message could go: nothing
    /// was attempted, and the lease is given back with the others.
    async fn deliver(&self, claim: Claim, stop: &CancellationToken) -> Option<Outcome> {
        let issue = match self.issue(claim.issue_id).await {
            Ok(i) => i,
            Err(e) => {
                let why = format!("issue content unavailable: {e}");
                return Some(self.settle(&claim, Happened::Unavailable, why, None));
            }
        };
        if claim.subscriber_status != SubscriberStatus::Active {
            let why = format!("subscriber is {}", claim.subscriber_status);
            return Some(self.settle(&claim, Happened::Inactive, why, None));
        }
        let built = match self.build(&issue, &claim).await {
            Ok(b) => b,
            Err(e) => return Some(self.settle(&claim, Happened::Refused, e.to_string(), None)),
        };
        // Built ahead of its turn (see `claim_loop`); now it waits for the
        // rate limit and a free connection, unless the worker stops first.
        let domain = claim.email.rsplit_once('@').map(|(_, d)| d).unwrap_or("");
        let _connection = tokio::select! {
            biased;
            _ = stop.cancelled() => return None,
            permit = async {
                self.throttle.until_ready(domain).await;
                self.connections.acquire().await
            } => permit.expect("semaphore is never closed"),
        };
        // The subscriber's status is read again at the last moment: inside
        // the SMTP transaction, after the recipient is accepted and before
        // the message goes (the transaction is abandoned otherwise). That
        // is the guarantee: an unsubscribe answered before the message
        // reached that point always wins; only a message already under way
        // can still go out. No earlier look is made: it would cost a query
        // per message and guarantee nothing more.
        let sent = self
            .transport
            .send_if(
                &built.message,
                &issue.issue().slug,
                &outbox_file_stem(claim.delivery_id, &claim.email),
                || self.still_active(&claim),
            )
            .await;
        let attempt = match sent {
            Ok(attempt) => attempt,
            Err(Withheld::Inactive(status)) => {
                let why = status.map_or("gone".to_string(), |s| s.to_string());
                let why = format!("subscriber is {why}");
                return Some(self.settle(&claim, Happened::Inactive, why, None));
            }
            Err(Withheld::Unknown(why)) => {
                return Some(self.settle(&claim, Happened::Unavailable, why, None));
            }
        };
        self.progress.replies[reply_class(attempt.happened)].fetch_add(1, Ordering::Relaxed);
        tracing::debug!(delivery = claim.delivery_id, happened = ?attempt.happened, reply = %attempt.reply, "attempt");
        Some(self.settle(
            &claim,
            attempt.happened,
            attempt.reply,
            Some(built.message_id),
        ))
    }

    /// The message of `claim`. A signed one is built on the worker's
    /// [`BuildPool`], `build_threads` threads beside the event loop: an RSA
    /// signature is CPU work, and made on the single-threaded event loop it
    /// would stall every connection while it ran and leave the other cores
    /// idle. How many are built ahead stays bounded by the claim loop's
    /// permits. An unsigned message costs less to build than handing it to
    /// another thread and back, so it is built here.
    async fn build(
        &self,
        issue: &Arc<IssueMessages>,
        claim: &Claim,
    ) -> Result<Built, MessageError> {
        if !issue.signs() {
            return issue.build(to(claim));
        }
        let pool = self
            .builders
            .get_or_init(|| BuildPool::start(self.settings.build_threads));
        let (issue, claim) = (Arc::clone(issue), claim.clone());
        pool.run(move || issue.build(to(&claim)))
            .await
            .unwrap_or(Err(MessageError::Cancelled))
    }

    /// The outcome of `claim`'s attempt, which came to `happened`, as the
    /// policy decides it; brakes the transport and counts the outcome.
    /// `message_id` is the message's, once it was built.
    fn settle(
        &self,
        claim: &Claim,
        happened: Happened,
        reply: String,
        message_id: Option<String>,
    ) -> Outcome {
        let now = Utc::now();
        let facts = Facts {
            attempts: claim.attempts,
            queued_at: claim.created_at,
        };
        let jitter = RetryPolicy::random_jitter();
        let decision = policy::decide(facts, happened, &self.settings.retry, now, jitter);
        if decision.brake {
            self.throttle.slow_down();
        }
        let p = &self.progress;
        let (counter, kind, reply) = match decision.outcome {
            Decided::Sent => (
                &p.sent,
                OutcomeKind::Sent {
                    // Only what the transport accepted is sent, and only a
                    // built message reaches the transport.
                    message_id: message_id.unwrap_or_default(),
                    relay_id: crate::relay_id::relay_queue_id(&reply),
                },
                reply,
            ),
            Decided::Deferred { until } => (
                &p.deferred,
                OutcomeKind::Deferred {
                    next_attempt_at: until,
                },
                reply,
            ),
            Decided::Failed => (&p.failed, OutcomeKind::Failed, reply),
            Decided::GaveUp { attempts } => (
                &p.failed,
                OutcomeKind::Failed,
                format!("gave up after {attempts} attempts: {reply}"),
            ),
            Decided::Bounced => (&p.bounced, OutcomeKind::Bounced, reply),
            Decided::Skipped => (&p.skipped, OutcomeKind::Skipped, reply),
        };
        counter.fetch_add(1, Ordering::Relaxed);
        Outcome {
            delivery_id: claim.delivery_id,
            attempts_before: claim.attempts,
            at: now,
            reply,
            kind,
        }
    }

    /// `Ok` while the subscriber is active; otherwise why the message is
    /// withheld.
    async fn still_active(&self, claim: &Claim) -> Result<(), Withheld> {
        let gate = self
            .gate
            .get_or_init(|| StatusGate::start(self.store.clone()));
        match gate.status(claim.subscriber_id).await {
            Ok(Some(SubscriberStatus::Active)) => Ok(()),
            Ok(status) => Err(Withheld::Inactive(status)),
            Err(e) => Err(Withheld::Unknown(e)),
        }
    }
}

/// Who `claim`'s message is for.
fn to(claim: &Claim) -> To<'_> {
    To {
        delivery_id: claim.delivery_id,
        subscriber_id: claim.subscriber_id,
        token_salt: claim.token_salt,
        email: &claim.email,
        name: claim.name.as_deref(),
    }
}

/// Why the last look at a subscriber's status stopped a message.
enum Withheld {
    /// The subscriber is no longer active (`None`: the row is gone).
    Inactive(Option<SubscriberStatus>),
    /// The store could not say.
    Unknown(String),
}

/// The index in [`Progress::replies`] of what happened: the class of the
/// reply's code; a file written counts as accepted.
fn reply_class(happened: Happened) -> usize {
    match happened {
        Happened::Reply { code, .. } => match code / 100 {
            2 => 0,
            4 => 1,
            5 => 2,
            _ => 3,
        },
        Happened::Written => 0,
        Happened::NoReply(_) | Happened::Refused | Happened::Unavailable | Happened::Inactive => 3,
    }
}

async fn flush(tx: &mpsc::Sender<Record>) {
    let (ack, done) = oneshot::channel();
    if tx.send(Record::Flush(ack)).await.is_ok() {
        let _ = done.await;
    }
}

/// Writes outcomes in batches: one transaction per batch keeps SQLite fast.
///
/// A batch is written once it holds [`GROUP_MAX`] outcomes, or
/// [`GROUP_WAIT`] after its first outcome arrived, or at once on a flush:
/// a group commit. Writing each outcome the moment it arrived made a fast
/// send commit every message or two, and those commits were a large share
/// of its CPU; waiting a couple of milliseconds gathers the outcomes of all
/// connections into one. The cost is the crash window: a worker killed
/// outright loses the outcomes of the messages in flight and of those
/// finished in the last [`GROUP_WAIT`], which the next worker sends again.
async fn record_outcomes(
    store: Store,
    mut rx: mpsc::Receiver<Record>,
    outage: Duration,
    held: Arc<Held>,
) {
    let mut batch = Vec::with_capacity(GROUP_MAX);
    let mut acks = Vec::new();
    while let Some(first) = rx.recv().await {
        let mut next = Some(first);
        let deadline = Instant::now() + GROUP_WAIT;
        while let Some(record) = next {
            match record {
                Record::Outcome(o) => batch.push(o),
                Record::Flush(ack) => acks.push(ack),
            }
            next = if batch.len() >= GROUP_MAX || !acks.is_empty() {
                None
            } else {
                match rx.try_recv() {
                    Ok(r) => Some(r),
                    // Nothing waiting: wait for more until the deadline.
                    Err(_) => tokio::time::timeout_at(deadline, rx.recv())
                        .await
                        .ok()
                        .flatten(),
                }
            };
        }
        if !batch.is_empty() {
            let span = tracing::debug_span!("record_outcomes", n = batch.len());
            // A failed write is retried while the database is away: these
            // are messages already sent, and losing their outcome means
            // sending them again once their leases run out.
            let write = ride_out(
                "record outcomes",
                outage.max(Duration::from_secs(10)),
                || store.record_outcomes(&batch),
            )
            .instrument(span)
            .await;
            if let Err(e) = write {
                tracing::error!(
                    error = %e,
                    n = batch.len(),
                    "cannot record outcomes; these deliveries will be sent again when their leases run out"
                );
            }
            held.let_go(batch.iter().map(|o| o.delivery_id));
            batch.clear();
        }
        for ack in acks.drain(..) {
            let _ = ack.send(());
        }
    }
}

/// Runs a store call again while the database is unavailable (a PostgreSQL
/// restart, a dropped connection), backing off from 100 ms to 5 s, for at
/// most `limit` in all; then, or at once for any other error, its error.
/// One warning when the outage starts and one line when it ends, so a
/// restart reads as two lines in the log, not a screenful.
async fn ride_out<T, F, Fut>(what: &str, limit: Duration, mut call: F) -> Result<T, StoreError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, StoreError>>,
{
    let started = Instant::now();
    let mut delay = Duration::from_millis(100);
    let mut warned = false;
    loop {
        match call().await {
            Ok(v) => {
                if warned {
                    tracing::warn!(
                        waited_ms = started.elapsed().as_millis() as u64,
                        "the database is back; going on"
                    );
                }
                return Ok(v);
            }
            Err(e) if e.is_unavailable() && started.elapsed() + delay <= limit => {
                if !warned {
                    tracing::warn!(error = %e, limit = ?limit, "cannot {what}: the database is unavailable; retrying");
                    warned = true;
                }
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
            Err(e) => return Err(e),
        }
    }
}
