//! A letterpress installation for the end-to-end tests: its own temp
//! directory, SQLite file (or PostgreSQL database), configuration by
//! `LETTERPRESS_*` variables only (an empty `letterpress.toml`, the
//! environment cleared), the built binary run as a user runs it, and a
//! handle on a running `serve`, `send` or `worker` that keeps what it
//! printed on stderr.
//!
//! `serve` is started with `server.bind = 127.0.0.1:0` and tells its port
//! on stderr (`listening on http://ADDR`), so tests run in parallel without
//! guessing free ports.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Output, Stdio};
use std::sync::{Arc, Mutex};

use letterpress_signing::{Keyring, Purpose};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::Notify;

use crate::WAIT;

/// The token secret every test installation uses.
pub const SECRET: &str = "serve-test-secret-0123456789abcdef0123456789";
/// The webhook secret every test installation uses.
pub const WEBHOOK_SECRET: &str = "serve-test-webhook-secret-0123456789abcdef";
/// The newsletter name, to find on the pages.
pub const NEWSLETTER: &str = "Ferris Weekly";
/// `server.public_url`: links in messages point here; tests take the
/// token from the link and ask the real (port 0) server.
pub const PUBLIC_URL: &str = "https://news.example.test";

/// A throwaway installation.
pub struct Lp {
    bin: PathBuf,
    dir: tempfile::TempDir,
    vars: BTreeMap<String, String>,
}

impl Lp {
    /// An installation of the binary `bin` (a root test passes
    /// `env!("CARGO_BIN_EXE_letterpress")`): SQLite in a fresh temp dir,
    /// the file transport, no SMTP, the content root the temp dir.
    pub fn new(bin: impl Into<PathBuf>) -> Lp {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("letterpress.toml"), "").expect("empty config");
        std::fs::create_dir_all(dir.path().join("issues")).expect("issues dir");
        let p = |s: &str| dir.path().join(s).display().to_string();
        let mut vars = BTreeMap::new();
        for (k, v) in [
            (
                "LETTERPRESS_DATABASE__URL",
                format!("sqlite://{}", p("lp.db")),
            ),
            ("LETTERPRESS_SERVER__SECRET", SECRET.to_string()),
            (
                "LETTERPRESS_SERVER__WEBHOOK_SECRET",
                WEBHOOK_SECRET.to_string(),
            ),
            ("LETTERPRESS_SERVER__BIND", "127.0.0.1:0".to_string()),
            ("LETTERPRESS_SERVER__PUBLIC_URL", PUBLIC_URL.to_string()),
            ("LETTERPRESS_NEWSLETTER__NAME", NEWSLETTER.to_string()),
            (
                "LETTERPRESS_NEWSLETTER__FROM",
                format!("{NEWSLETTER} <news@example.test>"),
            ),
            ("LETTERPRESS_CONTENT__ROOT", p("")),
            (
                "LETTERPRESS_CONTENT__TEMPLATE",
                crate::repo()
                    .join("templates/default.mjml")
                    .display()
                    .to_string(),
            ),
            ("LETTERPRESS_SCHEDULE__ISSUES_DIR", p("issues")),
            ("LETTERPRESS_DELIVERY__OUTBOX_DIR", p("outbox")),
            ("LETTERPRESS_DELIVERY__RETRY__INITIAL", "1s".to_string()),
            // Idle workers look for new work often, so tests do not wait on them.
            ("LETTERPRESS_DELIVERY__POLL_INTERVAL", "100ms".to_string()),
            // A scheduler that never fires on its own; tests that want one set it.
            ("LETTERPRESS_SCHEDULE__CRON", "0 0 1 1 *".to_string()),
        ] {
            vars.insert(k.to_string(), v);
        }
        Lp {
            bin: bin.into(),
            dir,
            vars,
        }
    }

    /// Delivers over SMTP to the test server on `port`.
    pub fn with_smtp(mut self, port: u16) -> Lp {
        self.set("LETTERPRESS_DELIVERY__TRANSPORT", "smtp");
        self.set(
            "LETTERPRESS_DELIVERY__SMTP_URL",
            &format!("smtp://127.0.0.1:{port}"),
        );
        self
    }

    /// Uses this database instead of the SQLite file.
    pub fn with_database(mut self, url: &str) -> Lp {
        self.set("LETTERPRESS_DATABASE__URL", url);
        self
    }

    /// Takes issues' shortcode paths relative to `root` (`content.root`).
    pub fn with_content_root(mut self, root: &Path) -> Lp {
        self.set("LETTERPRESS_CONTENT__ROOT", &root.display().to_string());
        self
    }

    /// Sets one variable.
    pub fn set(&mut self, key: &str, value: &str) -> &mut Lp {
        self.vars.insert(key.to_string(), value.to_string());
        self
    }

    /// A path inside the installation's directory.
    pub fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    /// `letterpress ARGS` with this installation's environment only.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.bin);
        c.current_dir(self.dir.path())
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("LETTERPRESS_CONFIG", self.path("letterpress.toml"))
            .envs(&self.vars)
            .args(args)
            .stdin(Stdio::null())
            .kill_on_drop(true);
        c
    }

    /// Runs a command to its end.
    pub async fn run(&self, args: &[&str]) -> Output {
        tokio::time::timeout(WAIT, self.cmd(args).output())
            .await
            .unwrap_or_else(|_| panic!("letterpress {args:?} did not finish"))
            .expect("run letterpress")
    }

    /// Runs and insists on success; returns stderr (the human output).
    pub async fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args).await;
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(
            out.status.success(),
            "letterpress {args:?} failed: {}\n{stderr}",
            out.status
        );
        stderr
    }

    /// `subscribers list --json`.
    pub async fn subscribers(&self) -> Vec<serde_json::Value> {
        let out = self.run(&["subscribers", "list", "--json"]).await;
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("list --json is a JSON array")
    }

    /// The status of one address (in any letter case) as `subscribers
    /// list --json` tells it; `None` when it is not on the list.
    pub async fn status_of(&self, email: &str) -> Option<String> {
        self.subscribers()
            .await
            .into_iter()
            .find(|s| {
                s["email"]
                    .as_str()
                    .is_some_and(|e| e.eq_ignore_ascii_case(email))
            })
            .map(|s| s["status"].as_str().unwrap_or_default().to_string())
    }

    /// Every address with its status.
    pub async fn statuses(&self) -> BTreeMap<String, String> {
        self.subscribers()
            .await
            .into_iter()
            .filter_map(|s| Some((s["email"].as_str()?.into(), s["status"].as_str()?.into())))
            .collect()
    }

    /// The id of one address (`subscribers list --json`).
    pub async fn id_of(&self, email: &str) -> i64 {
        self.subscribers()
            .await
            .into_iter()
            .find(|s| s["email"].as_str() == Some(email))
            .and_then(|s| s["id"].as_i64())
            .unwrap_or_else(|| panic!("{email} is not on the list"))
    }

    /// `status --json` of one issue.
    pub async fn issue_status(&self, slug: &str) -> Option<serde_json::Value> {
        let out = self.run(&["status", "--json"]).await;
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let all: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).expect("JSON");
        all.into_iter().find(|i| i["slug"].as_str() == Some(slug))
    }

    /// Adds active subscribers.
    pub async fn add(&self, emails: &[&str]) {
        for e in emails {
            self.ok(&["subscribers", "add", e]).await;
        }
    }

    /// Writes an issue file: `dir` is `issues` (the scheduler's folder) or
    /// anything else under the installation; `front` are extra front
    /// matter lines. Returns its path.
    pub fn write_issue(&self, dir: &str, slug: &str, front: &str) -> PathBuf {
        let folder = self.path(dir);
        std::fs::create_dir_all(&folder).expect("issue folder");
        let path = folder.join(format!("{slug}.md"));
        std::fs::write(
            &path,
            format!(
                "+++\ntitle = \"Issue {slug}\"\nslug = \"{slug}\"\n{front}\n+++\n\n\
                 Hello {{{{ subscriber_name(fallback=\"there\") }}}},\n\nthis is issue {slug}.\n"
            ),
        )
        .expect("write issue");
        path
    }

    /// The installation's database URL.
    pub fn database_url(&self) -> &str {
        &self.vars["LETTERPRESS_DATABASE__URL"]
    }

    /// A token as the server would mint it for the subscriber `id`: an
    /// unsubscribe token bound to the row's salt, a confirmation token
    /// bound to its pending signup's nonce (read from the database).
    pub async fn token(&self, purpose: Purpose, subscriber_id: i64) -> String {
        let column = match purpose {
            Purpose::Unsubscribe => "token_salt",
            Purpose::Confirm => "confirm_nonce",
            Purpose::ReturnPath => panic!("return-path tokens name deliveries, not subscribers"),
        };
        let binding = crate::sql::query_i64(
            self.database_url(),
            &format!("SELECT {column} FROM subscribers WHERE id = $1"),
            subscriber_id,
        )
        .await
        .unwrap_or(0);
        Keyring::new(SECRET.as_bytes(), &[])
            .expect("keyring")
            .token(purpose, subscriber_id, binding as u64, None)
    }

    /// Starts `letterpress serve` and waits until it listens.
    pub async fn serve(&self) -> Served {
        let mut served = self.start(&["serve"]);
        let line = served
            .wait_for_line("the listening line", |l| l.contains("listening on http://"))
            .await;
        served.addr = listen_addr(&line).unwrap_or_else(|| panic!("no address in {line:?}"));
        served
    }

    /// Starts `letterpress ARGS` (`send`, `worker`, …) in the background,
    /// keeping its stderr; `addr` means nothing unless it is `serve`.
    pub fn start(&self, args: &[&str]) -> Served {
        let name = args.first().copied().unwrap_or("letterpress").to_string();
        let mut child = self
            .cmd(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("start letterpress {args:?}: {e}"));
        let stderr = child.stderr.take().expect("stderr is piped");
        let log = Arc::new(Log::default());
        let reader = {
            let log = Arc::clone(&log);
            tokio::spawn(async move {
                let mut lines = BufReader::new(stderr).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    // Shown by the test harness when a test fails.
                    eprintln!("[{name}] {line}");
                    log.lines.lock().unwrap().push(line);
                    log.changed.notify_waiters();
                }
                *log.closed.lock().unwrap() = true;
                log.changed.notify_waiters();
            })
        };
        Served {
            child,
            addr: "127.0.0.1:0".parse().unwrap(),
            log,
            reader: Some(reader),
        }
    }
}

/// The address in `… listening on http://ADDR …` (plain or inside a JSON line).
fn listen_addr(line: &str) -> Option<SocketAddr> {
    let rest = &line[line.find("listening on http://")? + "listening on http://".len()..];
    let end = rest
        .find(|c: char| !(c.is_ascii_hexdigit() || matches!(c, '.' | ':' | '[' | ']')))
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

#[derive(Default)]
struct Log {
    lines: Mutex<Vec<String>>,
    closed: Mutex<bool>,
    changed: Notify,
}

/// A running `letterpress serve`; killed if dropped while running.
pub struct Served {
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
    log: Arc<Log>,
    reader: Option<tokio::task::JoinHandle<()>>,
}

impl Served {
    /// `http://ADDR{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Everything printed on stderr so far.
    pub fn lines(&self) -> Vec<String> {
        self.log.lines.lock().unwrap().clone()
    }

    /// Waits (event-driven, bounded) for a stderr line matching `pred`.
    pub async fn wait_for_line(&self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let notified = self.log.changed.notified();
            if let Some(l) = self.log.lines.lock().unwrap().iter().find(|l| pred(l)) {
                return l.clone();
            }
            if *self.log.closed.lock().unwrap() {
                panic!(
                    "serve closed stderr before {what}:\n{}",
                    self.lines().join("\n")
                );
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                panic!("timed out waiting for {what}:\n{}", self.lines().join("\n"));
            }
        }
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        self.signal(libc::SIGTERM);
    }

    /// Sends `signal` (e.g. `libc::SIGKILL`).
    pub fn signal(&self, signal: libc::c_int) {
        let pid = self.child.id().expect("the process is running") as libc::pid_t;
        // SAFETY: kill(2) with a pid we started and still own (not reaped).
        let rc = unsafe { libc::kill(pid, signal) };
        assert_eq!(rc, 0, "kill -{signal} {pid}");
    }

    /// SIGTERM, then waits for the exit and the end of stderr. Returns the
    /// exit status and every stderr line.
    pub async fn stop(mut self) -> (ExitStatus, Vec<String>) {
        self.terminate();
        self.wait().await
    }

    /// [`Served::stop`], insisting on a clean stop: exit status 0 and
    /// `stopped` as the last word. Returns the stderr lines.
    pub async fn stop_ok(self) -> Vec<String> {
        let (status, lines) = self.stop().await;
        assert!(
            status.success(),
            "serve exits 0 on SIGTERM, not {status}:\n{}",
            lines.join("\n")
        );
        assert!(
            lines.last().is_some_and(|l| l.contains("stopped")),
            "serve says it stopped:\n{}",
            lines.join("\n")
        );
        lines
    }

    /// Waits for the process to end by itself.
    pub async fn wait(&mut self) -> (ExitStatus, Vec<String>) {
        let status = tokio::time::timeout(WAIT, self.child.wait())
            .await
            .expect("serve exits after SIGTERM")
            .expect("wait for serve");
        if let Some(r) = self.reader.take() {
            let _ = tokio::time::timeout(WAIT, r).await;
        }
        (status, self.lines())
    }
}
