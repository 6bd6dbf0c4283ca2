//! Headless Chromium (Debian's `chromium` and `chromium-driver`), driven
//! through chromedriver over WebDriver with fantoccini: a page loaded,
//! typed into and submitted as a person's browser does it.
//!
//! chromedriver runs in a process group of its own, with Chromium under
//! it; dropping the [`Browser`] ends that group, so a failing test leaves
//! no browser behind.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::WAIT;
use crate::require::{self, Dependency};

/// A WebDriver session in a fresh headless Chromium profile.
pub struct Browser {
    /// The session: `goto`, `find`, `wait`, … (see fantoccini).
    pub client: fantoccini::Client,
    driver: Child,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts chromedriver on a free loopback port and opens a session;
    /// `None` (after [`require::missing`]) when Chromium or chromedriver
    /// is not installed.
    pub async fn start() -> Option<Browser> {
        let (Some(chromium), Some(driver)) = (
            find(&["chromium", "chromium-browser"]),
            find(&["chromedriver"]),
        ) else {
            require::missing(
                Dependency::Chromium,
                "chromium or chromedriver is not installed (apt-get install chromium chromium-driver)",
            );
            return None;
        };
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let mut command = Command::new(&driver);
        command
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let mut driver_process = command
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", driver.display()));
        let deadline = tokio::time::Instant::now() + WAIT;
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            if let Ok(Some(status)) = driver_process.try_wait() {
                panic!("chromedriver exited ({status}) before it listened");
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "chromedriver does not listen on 127.0.0.1:{port}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let profile = tempfile::tempdir().expect("a profile folder");
        let options = serde_json::json!({
            "binary": chromium,
            "args": [
                "--headless=new",
                // Root in a container has no user namespace to sandbox in.
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                format!("--user-data-dir={}", profile.path().display()),
            ],
        });
        let mut caps = serde_json::Map::new();
        caps.insert("goog:chromeOptions".into(), options);
        let client = fantoccini::ClientBuilder::new(
            hyper_util::client::legacy::connect::HttpConnector::new(),
        )
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{port}"))
        .await
        .unwrap_or_else(|e| panic!("a chromedriver session with {}: {e}", chromium.display()));
        Some(Browser {
            client,
            driver: driver_process,
            _profile: profile,
        })
    }

    /// Ends the session (Chromium quits), then chromedriver.
    pub async fn close(self) {
        let _ = self.client.clone().close().await;
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // The whole group: chromedriver and the Chromium it started.
        let group = self.driver.id() as libc::pid_t;
        // SAFETY: kill(2) on the process group of a child we started (it
        // leads the group) and have not reaped.
        unsafe { libc::kill(-group, libc::SIGTERM) };
        let _ = self.driver.wait();
    }
}

/// The first of `names` on PATH (or in /usr/bin).
/// Debian's Chromium binary, for tests that run it themselves (`--dump-dom`,
/// screenshots); `None` after [`require::missing`] when it is not installed.
pub fn chromium() -> Option<PathBuf> {
    let found = find(&["chromium", "chromium-browser"]);
    if found.is_none() {
        require::missing(
            Dependency::Chromium,
            "chromium is not installed (apt-get install chromium)",
        );
    }
    found
}

fn find(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs: Vec<PathBuf> = std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/bin")])
        .collect();
    names
        .iter()
        .flat_map(|n| dirs.iter().map(move |d| d.join(n)))
        .find(|p| p.is_file())
}
