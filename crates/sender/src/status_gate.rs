//! The last look at a subscriber's status before a message goes.
//!
//! Every message asks inside its SMTP transaction, after RCPT and before
//! DATA, whether its subscriber is still active (see `Transport::send_if`).
//! Asked one by one, that is a query per message, and on SQLite each query
//! is a round trip to the connection's thread: at thousands of messages a
//! second those round trips and the wake-ups they cost were a large part
//! of a send's CPU.
//!
//! So the questions are pooled: one task answers everything that is waiting
//! with a single query, and whatever arrives while the queries run waits for
//! the next one. On PostgreSQL two queries may run at once: a question that
//! arrives while one runs goes out in the second at once instead of waiting
//! for the first to end. With one query at a time a question waited on
//! average for half of the running query and then all of its own; there a
//! query is a round trip to another process and this wait sits inside every
//! SMTP transaction, so that extra half was a visible share of a send's time
//! (benches/README.md). Each query runs on a [`StatusReader`] of its own,
//! one per query that may run at once (on PostgreSQL each reader is a
//! connection of its own), and a reader is free again when its query ends.
//!
//! On a SQLite file that reader has a connection of its own and reads on
//! the asking task's thread, in microseconds: there every question is its
//! own lookup, asked at once, with nothing gathered. Gathered, a question
//! waited for the answering task's turn on the event loop (about 85 µs a
//! message in the bench, against 7 µs asked directly), and before that, with
//! the reader on a thread of its own, for that thread's wake-ups (about
//! 250 µs) while the relay sat idle.
//!
//! The guarantee is the same either way: every answer comes from a query
//! that started after the question was asked, so an unsubscribe committed
//! before a message reached its gate is always seen
//! (`tests/serve/unsubscribe.rs`, on both backends).

use std::collections::HashMap;

use letterpress_core::SubscriberStatus;
use letterpress_store::{Backend, StatusReader, Store};
use tokio::sync::{mpsc, oneshot};
use tracing::Instrument;

/// A subscriber's status now (`None`: the row is gone), or why the store
/// could not say.
pub(crate) type Answer = Result<Option<SubscriberStatus>, String>;

struct Ask {
    subscriber_id: i64,
    reply: oneshot::Sender<Answer>,
}

/// The shared asker; cheap to call from any number of tasks.
pub(crate) struct StatusGate(Gate);

enum Gate {
    /// Questions gathered by one task for shared queries (PostgreSQL, and
    /// SQLite read through the pool).
    Pooled(mpsc::UnboundedSender<Ask>),
    /// A reader that answers on the asking task's own thread (a SQLite
    /// file): each question is one lookup of its own, at once.
    Direct(StatusReader),
}

/// Questions answered by one query at most; more wait for the next.
const MAX_PER_QUERY: usize = 512;

/// Queries that may run at once on each backend (see the module's
/// documentation). On PostgreSQL four measured no faster than two and cost
/// more queries (issue #11's bench, 5 rounds).
fn queries_in_flight(backend: Backend) -> usize {
    match backend {
        Backend::Postgres => 2,
        Backend::Sqlite => 1,
    }
}

impl StatusGate {
    /// A gate over `store`'s [`StatusReader`]. Unless that reader answers
    /// on the caller's thread, starts the answering task on the current
    /// tokio runtime; it ends when the gate is dropped.
    pub(crate) fn start(store: Store) -> Self {
        let reader = store.status_reader();
        if reader.reads_inline() {
            return Self(Gate::Direct(reader));
        }
        let mut readers = vec![reader];
        readers.extend((1..queries_in_flight(store.backend())).map(|_| store.status_reader()));
        let (asks, rx) = mpsc::unbounded_channel();
        tokio::spawn(answer(readers, rx));
        Self(Gate::Pooled(asks))
    }

    /// The status of `subscriber_id`, read after this call began.
    pub(crate) async fn status(&self, subscriber_id: i64) -> Answer {
        let asks = match &self.0 {
            Gate::Pooled(asks) => asks,
            Gate::Direct(reader) => {
                let rows = reader
                    .statuses(&[subscriber_id])
                    .await
                    .map_err(|e| format!("store: {e}"))?;
                return Ok(rows.first().map(|(_, s)| *s));
            }
        };
        let (reply, answer) = oneshot::channel();
        asks.send(Ask {
            subscriber_id,
            reply,
        })
        .map_err(|_| "the status check has stopped".to_string())?;
        answer
            .await
            .map_err(|_| "the status check has stopped".to_string())?
    }
}

async fn answer(readers: Vec<StatusReader>, mut rx: mpsc::UnboundedReceiver<Ask>) {
    // The readers not running a query; one comes back when its query ends.
    let (free, mut idle) = mpsc::channel(readers.len().max(1));
    for reader in readers {
        let _ = free.try_send(reader);
    }
    loop {
        // A free reader first, then the questions: while every reader is
        // busy, questions gather in the channel for the next query.
        let Some(reader) = idle.recv().await else {
            return;
        };
        let mut asks = Vec::with_capacity(64);
        if rx.recv_many(&mut asks, MAX_PER_QUERY).await == 0 {
            return;
        }
        let free = free.clone();
        tokio::spawn(async move {
            reply(&reader, asks).await;
            let _ = free.send(reader).await;
        });
    }
}

/// Answers `asks` with one query.
async fn reply(reader: &StatusReader, asks: Vec<Ask>) {
    let ids: Vec<i64> = asks.iter().map(|a| a.subscriber_id).collect();
    let span = tracing::trace_span!("status_gate", n = ids.len());
    match reader.statuses(&ids).instrument(span).await {
        Ok(rows) => {
            let statuses: HashMap<i64, SubscriberStatus> = rows.into_iter().collect();
            for ask in asks {
                let _ = ask
                    .reply
                    .send(Ok(statuses.get(&ask.subscriber_id).copied()));
            }
        }
        Err(e) => {
            let why = format!("store: {e}");
            for ask in asks {
                let _ = ask.reply.send(Err(why.clone()));
            }
        }
    }
}
