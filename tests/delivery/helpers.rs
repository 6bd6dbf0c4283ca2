//! What every delivery scenario shares: an installation with its SMTP
//! relay on either backend, subscribers imported from CSV, `send`, and
//! `status --json` read as counts.

use std::collections::BTreeMap;
use std::path::Path;

use letterpress_testkit::{Lp, PgDb, SmtpServer};
use mail_parser::MessageParser;

/// `--wait` for every `send`: far longer than any retry here (1 s), so a
/// send that ends early has settled rather than given up.
pub(crate) const WAIT_ARG: &str = "--wait=60s";

/// The From address the installation uses (see the kit's `Lp::new`).
pub(crate) const FROM_DOMAIN: &str = "example.test";

/// An installation of the binary under test.
pub(crate) fn lp() -> Lp {
    Lp::new(env!("CARGO_BIN_EXE_letterpress"))
}

/// A test's installation and its SMTP server (and its PostgreSQL
/// database, dropped with it).
pub(crate) struct Setup {
    pub lp: Lp,
    pub smtp: SmtpServer,
    _pg: Option<PgDb>,
}

impl Setup {
    /// SQLite and an SMTP server.
    pub(crate) async fn sqlite() -> Setup {
        let smtp = SmtpServer::start().await;
        let lp = lp().with_smtp(smtp.port);
        Setup {
            lp,
            smtp,
            _pg: None,
        }
    }

    /// PostgreSQL (a database of its own) and an SMTP server; `None` when
    /// the test is skipped for want of PostgreSQL (see the kit's `PgDb`).
    pub(crate) async fn postgres() -> Option<Setup> {
        let pg = PgDb::create().await?;
        let smtp = SmtpServer::start().await;
        let lp = lp().with_smtp(smtp.port).with_database(&pg.url);
        Some(Setup {
            lp,
            smtp,
            _pg: Some(pg),
        })
    }
}

/// Two tests of one body: on SQLite, and on PostgreSQL (which says
/// "skipped" and passes without `TEST_DATABASE_URL`, unless
/// `LP_TEST_REQUIRE` names `postgres`).
macro_rules! on_both_backends {
    ($sqlite:ident, $postgres:ident, $body:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $sqlite() {
            let mut s = $crate::helpers::Setup::sqlite().await;
            $body(&mut s).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $postgres() {
            let Some(mut s) = $crate::helpers::Setup::postgres().await else {
                return;
            };
            $body(&mut s).await;
        }
    };
}
pub(crate) use on_both_backends;

/// Imports subscribers from a CSV file written here: `(email, name, status)`.
pub(crate) async fn import(lp: &Lp, rows: &[(&str, &str, &str)]) {
    let mut csv = String::from("email,name,status\r\n");
    for (email, name, status) in rows {
        csv.push_str(&format!(
            "{email},\"{}\",{status}\r\n",
            name.replace('"', "\"\"")
        ));
    }
    let path = lp.path(&format!("import-{}.csv", rand::random::<u32>()));
    std::fs::write(&path, csv).expect("write CSV");
    lp.ok(&["subscribers", "import", path.to_str().unwrap()])
        .await;
}

/// `n` active subscribers `s00@x.example` …, imported in one go.
pub(crate) async fn import_active(lp: &Lp, n: usize) -> Vec<String> {
    let emails: Vec<String> = (0..n).map(|i| format!("s{i:02}@x.example")).collect();
    let rows: Vec<(&str, &str, &str)> = emails.iter().map(|e| (e.as_str(), "", "active")).collect();
    import(lp, &rows).await;
    emails
}

pub(crate) fn arg(p: &Path) -> &str {
    p.to_str().expect("temp paths are UTF-8")
}

/// Copies accepted per recipient, sorted for readable assertion output.
pub(crate) fn copies(smtp: &SmtpServer) -> BTreeMap<String, usize> {
    smtp.copies().into_iter().collect()
}

/// Exactly one copy for each of `emails`, and nothing for anyone else.
pub(crate) fn one_each(emails: &[&str]) -> BTreeMap<String, usize> {
    emails.iter().map(|e| (e.to_string(), 1)).collect()
}

/// `status --json` of one issue as the six counts and the total.
pub(crate) async fn counts(lp: &Lp, slug: &str) -> BTreeMap<String, u64> {
    let st = lp
        .issue_status(slug)
        .await
        .unwrap_or_else(|| panic!("status --json lists no issue {slug}"));
    ["total", "queued", "deferred", "sent", "failed", "skipped"]
        .into_iter()
        .map(|k| {
            let v = st[k]
                .as_u64()
                .unwrap_or_else(|| panic!("status --json: {k} is not a count in {st}"));
            (k.to_string(), v)
        })
        .collect()
}

/// The expected counts: `total` is their sum.
pub(crate) fn expect(
    queued: u64,
    deferred: u64,
    sent: u64,
    failed: u64,
    skipped: u64,
) -> BTreeMap<String, u64> {
    [
        ("total", queued + deferred + sent + failed + skipped),
        ("queued", queued),
        ("deferred", deferred),
        ("sent", sent),
        ("failed", failed),
        ("skipped", skipped),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// `send ISSUE --yes --wait=60s` plus `extra`, insisting on success.
pub(crate) async fn send(lp: &Lp, issue: &Path, extra: &[&str]) -> String {
    let mut args = vec!["send", arg(issue), "--yes", WAIT_ARG];
    args.extend_from_slice(extra);
    lp.ok(&args).await
}

pub(crate) fn parse_text(raw: &str) -> String {
    let m = MessageParser::default()
        .parse(raw.as_bytes())
        .expect("a parsable message");
    m.body_text(0).expect("a text part").into_owned()
}
