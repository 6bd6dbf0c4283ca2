//! The accept loop: HTTP/1.1 connections served by hyper with the limits
//! a public listener needs.
//!
//! axum's own `serve` sets no timer on hyper, which silently disables the
//! header-read timeout, and takes as many connections as arrive: a few
//! sockets trickling one header line every few seconds, or requests that
//! declare a body and never send it, would each hold a connection (and a
//! task) for as long as the client likes. Here:
//!
//! - a request's head must arrive within [`HttpLimits::header_timeout`],
//!   and a kept-alive connection that sends no next request is closed after
//!   the same time (hyper's header-read timer runs while it waits);
//! - a request, its body included, must be answered within
//!   [`HttpLimits::request_timeout`] (408 otherwise; see `lib.rs`);
//! - at most [`HttpLimits::max_connections`] connections are open at once:
//!   the next is accepted only when one closes, so the excess waits in the
//!   kernel's backlog instead of in this process.
//!
//! HTTP/1.1 only: reverse proxies speak it to their upstream, and it is
//! what mailbox providers' one-click POSTs arrive as.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{ConnectInfo, Request};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// Timeouts and limits of the HTTP listener (`[server]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// How long a client may take to send a request's head, and how long
    /// an idle kept-alive connection stays open.
    pub header_timeout: Duration,
    /// How long a request may take from its head to its answer, reading
    /// its body included.
    pub request_timeout: Duration,
    /// Connections open at once.
    pub max_connections: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            header_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            max_connections: 1024,
        }
    }
}

/// Serves `app` on `listener` until `stop`, then stops accepting and lets
/// the open connections finish their current request.
pub(crate) async fn serve(
    listener: TcpListener,
    app: Router,
    limits: HttpLimits,
    stop: CancellationToken,
) -> std::io::Result<()> {
    let mut builder = auto::Builder::new(hyper_util::rt::TokioExecutor::new()).http1_only();
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(true);
    let builder = Arc::new(builder);
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    loop {
        let slot = tokio::select! {
            slot = Arc::clone(&slots).acquire_owned() => slot.expect("the semaphore is never closed"),
            _ = stop.cancelled() => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: the error is
                    // the listener's, not one client's; wait a moment.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = stop.cancelled() => break,
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let service = hyper::service::service_fn(move |mut request: Request<Incoming>| {
            request
                .extensions_mut()
                .insert(ConnectInfo::<SocketAddr>(peer));
            let app = app.clone();
            async move {
                Ok::<_, Infallible>(
                    app.oneshot(request.map(axum::body::Body::new))
                        .await
                        .unwrap_or_else(|never| match never {}),
                )
            }
        });
        let connection = builder
            .serve_connection(TokioIo::new(stream), service)
            .into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
            drop(slot);
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}
