//! Bounded waits and the HTTP client.

use std::time::Duration;

/// How long any single wait in the tests may take before it fails.
pub const WAIT: Duration = Duration::from_secs(60);

/// An HTTP client that does what a mailbox provider does: no redirects
/// followed, no proxies.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .timeout(WAIT)
        .build()
        .expect("HTTP client")
}

/// Polls `check` until it gives a value (bounded by [`WAIT`]). For state
/// that announces no event of its own: the database, `/metrics`.
pub async fn eventually<T>(what: &str, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
