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
//! with a single query, and whatever arrives while that query runs waits for
//! the next one. The guarantee is unchanged: every answer comes from a
//! query that started after the question was asked, so an unsubscribe
//! committed before a message reached its gate is always seen.

use std::collections::HashMap;

use letterpress_core::SubscriberStatus;
use letterpress_store::Store;
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
pub(crate) struct StatusGate {
    asks: mpsc::UnboundedSender<Ask>,
}

/// Questions answered by one query at most; more wait for the next.
const MAX_PER_QUERY: usize = 512;

impl StatusGate {
    /// Starts the answering task on the current tokio runtime. It ends
    /// when the gate is dropped.
    pub(crate) fn start(store: Store) -> Self {
        let (asks, rx) = mpsc::unbounded_channel();
        tokio::spawn(answer(store, rx));
        Self { asks }
    }

    /// The status of `subscriber_id`, read after this call began.
    pub(crate) async fn status(&self, subscriber_id: i64) -> Answer {
        let (reply, answer) = oneshot::channel();
        self.asks
            .send(Ask {
                subscriber_id,
                reply,
            })
            .map_err(|_| "the status check has stopped".to_string())?;
        answer
            .await
            .map_err(|_| "the status check has stopped".to_string())?
    }
}

async fn answer(store: Store, mut rx: mpsc::UnboundedReceiver<Ask>) {
    let mut asks = Vec::with_capacity(64);
    while rx.recv_many(&mut asks, MAX_PER_QUERY).await > 0 {
        let ids: Vec<i64> = asks.iter().map(|a| a.subscriber_id).collect();
        let span = tracing::trace_span!("status_gate", n = ids.len());
        let found = store.subscriber_statuses(&ids).instrument(span).await;
        match found {
            Ok(rows) => {
                let statuses: HashMap<i64, SubscriberStatus> = rows.into_iter().collect();
                for ask in asks.drain(..) {
                    let _ = ask
                        .reply
                        .send(Ok(statuses.get(&ask.subscriber_id).copied()));
                }
            }
            Err(e) => {
                let why = format!("store: {e}");
                for ask in asks.drain(..) {
                    let _ = ask.reply.send(Err(why.clone()));
                }
            }
        }
    }
}
