//! The TCP stream under lettre's connection, counting the flushes that
//! complete, so that a transaction can tell when lettre has put a command
//! on the wire while lettre waits for its reply.
//!
//! lettre's `command` writes, flushes and then reads the reply, and has no
//! write without the read. The transaction needs one: the message should
//! travel while the last look at the subscriber's status is still being
//! answered (a PostgreSQL round trip), with only the final dot held back
//! until the answer is in. So it starts `command` with the message, and
//! once this count moves (the write is out, lettre now waits to read) it
//! drops that future. Dropping it there loses nothing: lettre reads
//! through a buffer, and a read that returned `Pending` has taken no byte.
//!
//! The count is read on the same task that drives lettre's future, right
//! after polling it, so Relaxed ordering is enough. Under STARTTLS rustls
//! wraps this stream and flushes it at the end of its own flush, after the
//! last record is written; its writes do not flush.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use lettre::transport::smtp::client::AsyncTokioStream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// A TCP stream that counts its completed flushes.
#[derive(Debug)]
pub(super) struct CountedTcp {
    tcp: TcpStream,
    flushes: Flushes,
}

/// The count of a [`CountedTcp`]'s completed flushes, shared with the
/// connection that owns it.
#[derive(Debug, Clone, Default)]
pub(super) struct Flushes(Arc<AtomicU64>);

impl Flushes {
    /// The count now.
    pub(super) fn now(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

impl CountedTcp {
    /// `tcp`, and the handle its flushes are counted on.
    pub(super) fn new(tcp: TcpStream) -> (CountedTcp, Flushes) {
        let flushes = Flushes::default();
        let stream = CountedTcp {
            tcp,
            flushes: flushes.clone(),
        };
        (stream, flushes)
    }
}

impl AsyncRead for CountedTcp {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_read(cx, buf)
    }
}

impl AsyncWrite for CountedTcp {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let flushed = Pin::new(&mut self.tcp).poll_flush(cx);
        if let Poll::Ready(Ok(())) = flushed {
            self.flushes.0.fetch_add(1, Ordering::Relaxed);
        }
        flushed
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }
}

impl AsyncTokioStream for CountedTcp {
    fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.tcp.peer_addr()
    }
}
