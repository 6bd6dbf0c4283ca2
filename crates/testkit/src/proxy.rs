//! A TCP forwarder on loopback that a test can cut, to make a server "go
//! away" the way a restarted PostgreSQL does for its clients: every open
//! connection closes, and new ones are closed as soon as they arrive, until
//! the test restores it. The server itself (shared by other tests) is never
//! touched.

use std::sync::{Arc, Mutex};

use tokio::io::copy_bidirectional;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

/// A forwarder from a loopback port of its own to `target`.
pub struct TcpProxy {
    /// The port clients connect to.
    pub port: u16,
    state: Arc<Mutex<State>>,
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
        let accept = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let mut st = shared.lock().unwrap_or_else(|e| e.into_inner());
                if st.cut {
                    st.refused += 1;
                    drop(client);
                    continue;
                }
                let target = target.clone();
                st.connections.spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(&target).await {
                        let _ = copy_bidirectional(&mut client, &mut server).await;
                    }
                });
            }
        });
        TcpProxy {
            port,
            state,
            _accept: accept,
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
