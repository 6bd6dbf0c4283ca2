//! A TCP forwarder on loopback that a test can cut, to make a server "go
//! away" the way a restarted PostgreSQL does for its clients: every open
//! connection closes, and new ones are closed as soon as they arrive, until
//! the test restores it. The server itself (shared by other tests) is never
//! touched. It also counts the bytes clients sent through it, which tells a
//! test what a client has written even when it is encrypted.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::task::JoinSet;

/// A forwarder from a loopback port of its own to `target`.
pub struct TcpProxy {
    /// The port clients connect to.
    pub port: u16,
    state: Arc<Mutex<State>>,
    /// Bytes forwarded from clients to the target, and its change.
    forwarded: Arc<(AtomicUsize, Notify)>,
    _accept: tokio::task::JoinHandle<()>,
}

struct State {
    cut: bool,
    connections: JoinSet<()>,
    /// Connections closed while cut (what clients saw fail).
    refused: usize,
}

impl TcpProxy {
    /// Starts forwarding to `target` (`host:port`).
    pub async fn start(target: &str) -> TcpProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let port = listener.local_addr().expect("proxy address").port();
        let state = Arc::new(Mutex::new(State {
            cut: false,
            connections: JoinSet::new(),
            refused: 0,
        }));
        let target = target.to_string();
        let shared = Arc::clone(&state);
        let forwarded = Arc::new((AtomicUsize::new(0), Notify::new()));
        let counted = Arc::clone(&forwarded);
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let mut st = shared.lock().unwrap_or_else(|e| e.into_inner());
                if st.cut {
                    st.refused += 1;
                    drop(client);
                    continue;
                }
                let target = target.clone();
                let counted = Arc::clone(&counted);
                st.connections.spawn(async move {
                    if let Ok(server) = TcpStream::connect(&target).await {
                        forward(client, server, &counted).await;
                    }
                });
            }
        });
        TcpProxy {
            port,
            state,
            forwarded,
            _accept: accept,
        }
    }

    /// Bytes forwarded so far from clients to the target, all connections.
    pub fn forwarded(&self) -> usize {
        self.forwarded.0.load(Ordering::SeqCst)
    }

    /// Waits (event-driven, bounded) until at least `bytes` have been
    /// forwarded from clients to the target.
    pub async fn wait_forwarded(&self, what: &str, bytes: usize) {
        let deadline = tokio::time::Instant::now() + crate::WAIT;
        loop {
            let changed = self.forwarded.1.notified();
            if self.forwarded() >= bytes {
                return;
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                panic!(
                    "timed out waiting for: {what} ({} of {bytes} bytes)",
                    self.forwarded()
                );
            }
        }
    }

    /// Closes every open connection and every new one until [`restore`].
    ///
    /// [`restore`]: TcpProxy::restore
    pub fn cut(&self) {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        st.cut = true;
        st.connections.abort_all();
    }

    /// Forwards again.
    pub fn restore(&self) {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).cut = false;
    }

    /// Connections closed on arrival while cut.
    pub fn refused(&self) -> usize {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).refused
    }
}

/// Copies both ways until both sides are done, as `copy_bidirectional`
/// does, counting what goes from the client to the server.
async fn forward(client: TcpStream, server: TcpStream, counted: &(AtomicUsize, Notify)) {
    let (mut from_client, mut to_client) = client.into_split();
    let (mut from_server, mut to_server) = server.into_split();
    let up = async {
        let mut buf = vec![0u8; 16 * 1024];
        while let Ok(n) = from_client.read(&mut buf).await {
            if n == 0 || to_server.write_all(&buf[..n]).await.is_err() {
                break;
            }
            counted.0.fetch_add(n, Ordering::SeqCst);
            counted.1.notify_waiters();
        }
        let _ = to_server.shutdown().await;
    };
    let down = async {
        let _ = tokio::io::copy(&mut from_server, &mut to_client).await;
        let _ = to_client.shutdown().await;
    };
    tokio::join!(up, down);
}
