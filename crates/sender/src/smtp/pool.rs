//! [`SmtpClient`]: the connections to one relay, kept open between
//! messages, and which one a message goes out on.

use std::future::Future;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use lettre::address::Envelope;
use lettre::transport::smtp::response::Response;

use super::connection::{Conn, Probe};
use super::error::SendError;
use super::reply::Stage;
use super::target::Target;
use super::transaction::{self, Step};

struct Idle {
    conn: Conn,
    since: Instant,
}

/// A pool of SMTP connections to one relay (see the module documentation).
pub struct SmtpClient {
    target: Target,
    timeout: Duration,
    max_idle: usize,
    idle: Mutex<Vec<Idle>>,
}

/// Connections unused for longer than this are closed rather than reused:
/// relays drop idle clients after a few minutes anyway.
const MAX_IDLE_TIME: Duration = Duration::from_secs(60);

impl SmtpClient {
    /// A client keeping at most `max_idle` connections open between messages.
    pub fn new(target: Target, timeout: Duration, max_idle: usize) -> Self {
        Self {
            target,
            timeout,
            max_idle: max_idle.max(1),
            idle: Mutex::new(Vec::new()),
        }
    }

    /// One session to the relay, step by step, for `letterpress doctor`
    /// (see [`Probe`]); nothing is sent.
    pub async fn probe(&self) -> Probe {
        super::connection::probe(&self.target, self.timeout).await
    }

    /// Sends the message `(head, body)` (its header section, ended by the
    /// empty line, and its body; CRLF line ends) to the envelope's
    /// recipients and returns the server's reply to the end of data,
    /// asking `gate` once the recipients are accepted and before the
    /// message's end goes: `Err(why)` abandons the transaction (the
    /// connection is dropped without the final dot, so the server delivers
    /// nothing) and is returned as the outer `Err`. A check made here
    /// cannot be overtaken by a change committed before the recipient was
    /// accepted, which a check made before sending can. It runs while
    /// DATA's reply travels and, if it is still running then, while the
    /// message is written. (`Transport::send` is the ungated form.)
    pub async fn send_gated<T, F, Fut>(
        &self,
        envelope: &Envelope,
        message: (&[u8], &[u8]),
        gate: F,
    ) -> Result<Result<Response, SendError>, T>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<(), T>>,
    {
        if let Some(mut conn) = self.take_idle() {
            match transaction::run(&mut conn, envelope, message, &gate).await {
                Ok(Step::Accepted(reply)) => {
                    self.park(conn);
                    return Ok(Ok(reply));
                }
                Ok(Step::Stopped { why }) => {
                    drop(conn); // see Step::Stopped
                    return Err(why);
                }
                // No reply at all to MAIL FROM on a connection that sat in
                // the pool: most likely the server closed it meanwhile.
                // Nothing of the message was sent, so a fresh connection
                // may try it. A reply (a 421 included) is the server's
                // answer, not a stale connection: it goes to the policy,
                // which defers and brakes on it.
                Err(e) if e.stage() == Some(Stage::Mail) && stale(&e) => {
                    tracing::debug!(error = %e, "pooled connection unusable; reconnecting");
                    conn.close().await;
                }
                // Refused here before the first command: the connection
                // is as good as it was.
                Err(e) if untouched(&e) => {
                    self.park(conn);
                    return Ok(Err(e));
                }
                Err(e) => return Ok(Err(discard(conn, e).await)),
            }
        }
        let mut conn = match Conn::open(&self.target, self.timeout).await {
            Ok(c) => c,
            Err(e) => return Ok(Err(e)),
        };
        match transaction::run(&mut conn, envelope, message, &gate).await {
            Ok(Step::Accepted(reply)) => {
                self.park(conn);
                Ok(Ok(reply))
            }
            Ok(Step::Stopped { why }) => {
                drop(conn); // see Step::Stopped
                Err(why)
            }
            Err(e) if untouched(&e) => {
                self.park(conn);
                Ok(Err(e))
            }
            Err(e) => Ok(Err(discard(conn, e).await)),
        }
    }

    /// Closes the pooled connections politely (QUIT).
    pub async fn shutdown(&self) {
        let idle = std::mem::take(&mut *self.idle.lock().unwrap_or_else(|e| e.into_inner()));
        for i in idle {
            i.conn.close().await;
        }
    }

    fn take_idle(&self) -> Option<Conn> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        // Newest last: the most recently used connection is the likeliest alive.
        while let Some(i) = idle.pop() {
            if i.since.elapsed() < MAX_IDLE_TIME && !i.conn.inner.has_broken() {
                return Some(i.conn);
            }
            // Too old: dropping it closes the socket without a QUIT, which
            // a relay that has timed us out will not read anyway.
        }
        None
    }

    fn park(&self, conn: Conn) {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < self.max_idle && !conn.inner.has_broken() {
            idle.push(Idle {
                conn,
                since: Instant::now(),
            });
        }
    }
}

/// Whether a failure at MAIL FROM on a reused connection says the
/// connection went stale in the pool: it closed, was reset, or gave
/// nothing readable. Not a reply, and not a timeout (a server that
/// stalls is no better on a new connection).
fn stale(e: &SendError) -> bool {
    match e {
        SendError::Broken { .. } => true,
        SendError::Refused(_)
        | SendError::Tls { .. }
        | SendError::Untrusted { .. }
        | SendError::PlainAuth { .. }
        | SendError::Client { .. }
        | SendError::Timeout { .. }
        | SendError::Connect(_)
        | SendError::Unsupported(_)
        | SendError::BareLineEnd(_) => false,
    }
}

/// Whether the message was refused here before its first command: the
/// connection is then as good as it was.
fn untouched(e: &SendError) -> bool {
    matches!(e, SendError::Unsupported(_) | SendError::BareLineEnd(_))
}

/// After a failed transaction the connection is closed, as lettre does:
/// the server's state mid-transaction is unknown.
async fn discard(conn: Conn, e: SendError) -> SendError {
    conn.close().await;
    e
}
