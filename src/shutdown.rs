//! Stopping on a signal: Ctrl-C or SIGTERM cancels one token that every
//! part of a command watches (the worker stops claiming and finishes what
//! is in flight, the HTTP server stops accepting, the scheduler stops).

use tokio_util::sync::CancellationToken;

/// A token cancelled on Ctrl-C or SIGTERM.
pub(crate) fn on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            let mut term =
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(s) => s,
                    Err(_) => {
                        let _ = ctrl_c.await;
                        t.cancel();
                        return;
                    }
                };
            tokio::select! {
                _ = ctrl_c => {},
                _ = term.recv() => {},
            }
        }
        #[cfg(not(unix))]
        let _ = ctrl_c.await;
        // Cancel first: whoever reads the notice may rely on nothing new
        // being started after it.
        t.cancel();
        crate::logging::notice("stopping: finishing messages in flight…");
    });
    token
}
