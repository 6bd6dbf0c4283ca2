//! The delivery engine end to end: the built `letterpress` binary (`send`,
//! `status`, `retry-failed`, `worker`) against the in-process SMTP server,
//! on a real SQLite file and, when `TEST_DATABASE_URL` is set, on
//! PostgreSQL.
//!
//! What a user checks: who got how many copies (the SMTP server's count),
//! what `status --json` and `subscribers list --json` say, and the
//! messages as a mail client parses them (`mail-parser`). DKIM signatures
//! are checked by an independent verifier (Python's dkimpy).

#![cfg(unix)]

#[path = "support/server.rs"]
mod server;
#[path = "support/smtp.rs"]
mod smtp;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use mail_parser::{MessageParser, MimeHeaders};
use server::{Lp, PUBLIC_URL, PgDb, eventually};
use smtp::{Behavior, SmtpServer};

/// `--wait` for every `send`: far longer than any retry here (1 s), so a
/// send that ends early has settled rather than given up.
const WAIT_ARG: &str = "--wait=60s";

/// The From address the installation uses (see `support/server.rs`).
const FROM_DOMAIN: &str = "example.test";

/// A test's installation and its SMTP server.
struct Setup {
    lp: Lp,
    smtp: SmtpServer,
    pg: Option<PgDb>,
}

impl Setup {
    /// SQLite and an SMTP server.
    async fn sqlite() -> Setup {
        let smtp = SmtpServer::start().await;
        let lp = Lp::new().with_smtp(smtp.port);
        Setup { lp, smtp, pg: None }
    }

    /// PostgreSQL (a database of its own) and an SMTP server; `None` after
    /// saying "skipped" when `TEST_DATABASE_URL` is not set.
    async fn postgres() -> Option<Setup> {
        let pg = PgDb::create().await?;
        let smtp = SmtpServer::start().await;
        let lp = Lp::new().with_smtp(smtp.port).with_database(&pg.url);
        Some(Setup {
            lp,
            smtp,
            pg: Some(pg),
        })
    }

    async fn finish(self) {
        if let Some(pg) = self.pg {
            pg.drop_db().await;
        }
    }
}

/// Imports subscribers from a CSV file written here: `(email, name, status)`.
async fn import(lp: &Lp, rows: &[(&str, &str, &str)]) {
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
async fn import_active(lp: &Lp, n: usize) -> Vec<String> {
    let emails: Vec<String> = (0..n).map(|i| format!("s{i:02}@x.example")).collect();
    let rows: Vec<(&str, &str, &str)> = emails.iter().map(|e| (e.as_str(), "", "active")).collect();
    import(lp, &rows).await;
    emails
}

fn arg(p: &Path) -> &str {
    p.to_str().expect("temp paths are UTF-8")
}

/// Copies accepted per recipient, sorted for readable assertion output.
fn copies(smtp: &SmtpServer) -> BTreeMap<String, usize> {
    smtp.copies().into_iter().collect()
}

/// Exactly one copy for each of `emails`, and nothing for anyone else.
fn one_each(emails: &[&str]) -> BTreeMap<String, usize> {
    emails.iter().map(|e| (e.to_string(), 1)).collect()
}

/// `status --json` of one issue as the six counts and the total.
async fn counts(lp: &Lp, slug: &str) -> BTreeMap<String, u64> {
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
fn expect(
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
async fn send(lp: &Lp, issue: &Path, extra: &[&str]) -> String {
    let mut args = vec!["send", arg(issue), "--yes", WAIT_ARG];
    args.extend_from_slice(extra);
    lp.ok(&args).await
}

/// Two tests of one body: on SQLite, and on PostgreSQL (which says
/// "skipped" and passes without `TEST_DATABASE_URL`).
macro_rules! on_both_backends {
    ($sqlite:ident, $postgres:ident, $body:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $sqlite() {
            let mut s = Setup::sqlite().await;
            $body(&mut s).await;
            s.finish().await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $postgres() {
            let Some(mut s) = Setup::postgres().await else {
                return;
            };
            $body(&mut s).await;
            s.finish().await;
        }
    };
}

/// Waits until `status --json` shows all `n` deliveries of `slug` sent.
async fn wait_all_sent(lp: &Lp, slug: &str, n: usize) {
    eventually(
        &format!("status shows all {n} of {slug} sent"),
        async || {
            let c = lp.issue_status(slug).await?;
            (c["sent"].as_u64() == Some(n as u64)).then_some(())
        },
    )
    .await;
}

/// SIGTERM to each worker; each must exit 0.
async fn stop_workers(workers: Vec<server::Served>) {
    for w in workers {
        let (status, lines) = w.stop().await;
        assert!(
            status.success(),
            "worker stops cleanly on SIGTERM: {status}\n{}",
            lines.join("\n")
        );
    }
}

// 1. One copy per active subscriber, idempotent sends, changed content,
//    dry runs and test copies.

async fn sends_once_to_active_subscribers(s: &mut Setup) {
    let (lp, smtp) = (&s.lp, &s.smtp);
    import(
        lp,
        &[
            ("ann@x.example", "Ann", "active"),
            ("bob@x.example", "", "active"),
            ("cat@x.example", "", "active"),
            ("pending@x.example", "", "pending"),
            ("gone@x.example", "", "unsubscribed"),
        ],
    )
    .await;
    let issue = lp.write_issue("content", "first", "");
    let active = ["ann@x.example", "bob@x.example", "cat@x.example"];

    let out = send(lp, &issue, &[]).await;
    assert_eq!(copies(smtp), one_each(&active), "first send:\n{out}");
    assert_eq!(counts(lp, "first").await, expect(0, 0, 3, 0, 0));
    let (sessions, quits) = smtp.sessions_and_quits();
    assert!(
        sessions > 0 && quits == sessions,
        "send ends each SMTP connection with QUIT: {quits} of {sessions}"
    );

    let out = send(lp, &issue, &[]).await;
    assert_eq!(copies(smtp), one_each(&active), "second send:\n{out}");
    assert_eq!(counts(lp, "first").await, expect(0, 0, 3, 0, 0));

    // The same slug from different content: refused, nothing sent.
    let body = std::fs::read_to_string(&issue).unwrap();
    std::fs::write(
        &issue,
        body.replace("this is issue", "this is the corrected issue"),
    )
    .unwrap();
    import(lp, &[("dan@x.example", "", "active")]).await;
    let out = lp.run(&["send", arg(&issue), "--yes", WAIT_ARG]).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "changed file refused:\n{stderr}"
    );
    assert!(
        stderr.contains("\"first\"")
            && stderr.contains("different content")
            && stderr.contains("--allow-changed"),
        "the refusal names the slug, the reason and the way out:\n{stderr}"
    );
    assert_eq!(
        copies(smtp),
        one_each(&active),
        "a refused send sends nothing"
    );

    // --allow-changed: the changed file goes to those not yet served only.
    send(lp, &issue, &["--allow-changed"]).await;
    let mut all = active.to_vec();
    all.push("dan@x.example");
    assert_eq!(copies(smtp), one_each(&all));
    let dan = smtp
        .received()
        .into_iter()
        .find(|r| r.rcpt_to == ["dan@x.example"])
        .expect("dan's copy");
    assert!(
        parse_text(&dan.data).contains("corrected issue"),
        "dan got the changed content"
    );
    assert_eq!(counts(lp, "first").await, expect(0, 0, 4, 0, 0));

    // --dry-run: no issue row, no message.
    let second = lp.write_issue("content", "second", "");
    let before = smtp.received().len();
    let out = lp.ok(&["send", arg(&second), "--dry-run"]).await;
    assert!(
        out.contains("4 active subscriber"),
        "dry run counts:\n{out}"
    );
    assert!(
        lp.issue_status("second").await.is_none(),
        "dry run writes no issue"
    );
    assert_eq!(smtp.received().len(), before, "dry run sends nothing");

    // --dry-run wins over --to: no test copy either.
    let out = lp
        .ok(&[
            "send",
            arg(&second),
            "--to",
            "tester@y.example",
            "--dry-run",
        ])
        .await;
    assert!(out.contains("tester@y.example"), "{out}");
    assert_eq!(
        smtp.received().len(),
        before,
        "a dry run sends no test copy"
    );

    // --to: one test copy outside the list and the ledger.
    lp.ok(&["send", arg(&second), "--to", "tester@y.example"])
        .await;
    let received = smtp.received();
    assert_eq!(received.len(), before + 1, "one test copy");
    assert_eq!(received[before].rcpt_to, ["tester@y.example"]);
    assert!(
        lp.issue_status("second").await.is_none(),
        "a test copy is not an issue"
    );
    assert_eq!(counts(lp, "first").await, expect(0, 0, 4, 0, 0));
}

on_both_backends!(
    send_delivers_one_copy_per_active_subscriber_sqlite,
    send_delivers_one_copy_per_active_subscriber_postgres,
    sends_once_to_active_subscribers
);

// 2. Deferrals: 451, a dropped connection, a stalled server.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deferred_deliveries_arrive_once_the_server_recovers() {
    let mut s = Setup::sqlite().await;
    s.lp.set("LETTERPRESS_DELIVERY__TIMEOUT", "2s");
    let smtp = &s.smtp;
    smtp.rule(
        "later451@",
        Behavior::RcptReply("451 4.3.0 try later".into()),
        Some(1),
    );
    smtp.rule("dropped@", Behavior::Drop, Some(1));
    smtp.rule("stalled@", Behavior::Stall, Some(1));
    let all = [
        "ok1@x.example",
        "later451@x.example",
        "dropped@x.example",
        "stalled@x.example",
        "ok2@x.example",
    ];
    let rows: Vec<_> = all.iter().map(|e| (*e, "", "active")).collect();
    import(&s.lp, &rows).await;
    let issue = s.lp.write_issue("content", "flaky", "");

    let out = send(&s.lp, &issue, &[]).await;
    assert_eq!(copies(smtp), one_each(&all), "{out}");
    for e in [
        "later451@x.example",
        "dropped@x.example",
        "stalled@x.example",
    ] {
        assert_eq!(
            smtp.attempts(e),
            2,
            "{e}: one failed attempt, one that worked"
        );
    }
    for e in ["ok1@x.example", "ok2@x.example"] {
        assert_eq!(smtp.attempts(e), 1, "{e}");
    }
    assert_eq!(counts(&s.lp, "flaky").await, expect(0, 0, 5, 0, 0));
    s.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_deferred_past_the_max_age_fails() {
    let mut s = Setup::sqlite().await;
    // Retries after about 1 s, then 2 s: the second deferral, with the next
    // try beyond the 2 s max age, gives up.
    s.lp.set("LETTERPRESS_DELIVERY__RETRY__MAX_AGE", "2s");
    s.smtp.rule(
        "never@",
        Behavior::RcptReply("451 4.3.0 try later".into()),
        None,
    );
    import(
        &s.lp,
        &[
            ("ok@x.example", "", "active"),
            ("never@x.example", "", "active"),
        ],
    )
    .await;
    let issue = s.lp.write_issue("content", "stale", "");
    let out = send(&s.lp, &issue, &[]).await;
    assert_eq!(copies(&s.smtp), one_each(&["ok@x.example"]), "{out}");
    assert_eq!(s.smtp.attempts("never@x.example"), 2);
    assert_eq!(counts(&s.lp, "stale").await, expect(0, 0, 1, 1, 0));
    assert_eq!(
        s.lp.status_of("never@x.example").await.as_deref(),
        Some("active"),
        "giving up on a deferral blames no one"
    );
    s.finish().await;
}

// 3. Hard bounces, policy rejections and "slow down".

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bounces_failures_and_slow_down() {
    let s = Setup::sqlite().await;
    let (lp, smtp) = (&s.lp, &s.smtp);
    smtp.rule(
        "unknown@",
        Behavior::RcptReply("550 5.1.1 user unknown".into()),
        None,
    );
    smtp.rule(
        "spammy@",
        Behavior::DataReply("554 5.7.1 rejected as spam".into()),
        None,
    );
    smtp.rule(
        "busy@",
        Behavior::RcptReply("421 4.7.0 slow down".into()),
        Some(1),
    );
    let all = [
        "fine@x.example",
        "unknown@x.example",
        "spammy@x.example",
        "busy@x.example",
    ];
    let rows: Vec<_> = all.iter().map(|e| (*e, "", "active")).collect();
    import(lp, &rows).await;
    let issue = lp.write_issue("content", "bouncy", "");

    let out = send(lp, &issue, &[]).await;
    assert_eq!(
        copies(smtp),
        one_each(&["fine@x.example", "busy@x.example"]),
        "{out}"
    );
    assert_eq!(
        smtp.attempts("busy@x.example"),
        2,
        "421 deferred, then accepted"
    );
    assert_eq!(
        smtp.attempts("unknown@x.example"),
        1,
        "a hard bounce is not retried"
    );
    assert_eq!(smtp.attempts("spammy@x.example"), 1, "a 554 is not retried");
    assert_eq!(counts(lp, "bouncy").await, expect(0, 0, 2, 2, 0));
    let statuses = lp.statuses().await;
    assert_eq!(statuses["unknown@x.example"], "bounced");
    assert_eq!(
        statuses["spammy@x.example"], "active",
        "a policy rejection blames no one"
    );
    assert_eq!(statuses["busy@x.example"], "active");
    assert_eq!(statuses["fine@x.example"], "active");
    s.finish().await;
}

/// The client asks a second EHLO to learn whether it may pipeline; a relay
/// that refuses it is sent to one command at a time, not given up on.
#[tokio::test]
async fn a_relay_refusing_a_repeated_ehlo_still_gets_every_message() {
    let s = Setup::sqlite().await;
    s.smtp.refuse_repeated_ehlo();
    import(
        &s.lp,
        &[
            ("ann@x.example", "", "active"),
            ("bob@x.example", "", "active"),
        ],
    )
    .await;
    let issue = s.lp.write_issue("content", "strict", "");
    let out = send(&s.lp, &issue, &[]).await;
    assert_eq!(s.smtp.pipelined(), 0, "it did not say it may be");
    assert_eq!(
        copies(&s.smtp),
        one_each(&["ann@x.example", "bob@x.example"]),
        "{out}"
    );
    assert_eq!(counts(&s.lp, "strict").await, expect(0, 0, 2, 0, 0));
    s.finish().await;
}

// 4. An unsubscribe that arrives mid-send wins.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsubscribed_mid_send_gets_nothing() {
    unsubscribed_mid_send(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsubscribed_mid_send_gets_nothing_without_pipelining() {
    unsubscribed_mid_send(false).await;
}

/// The last look at the subscriber's status comes inside the transaction,
/// after MAIL FROM: with PIPELINING the server already waits for the
/// message and the connection is dropped without it; without, the
/// transaction is reset before DATA. Either way nothing is delivered.
async fn unsubscribed_mid_send(pipelining: bool) {
    let mut s = Setup::sqlite().await;
    if !pipelining {
        s.smtp.without_pipelining();
    }
    s.lp.set("LETTERPRESS_DELIVERY__CONCURRENCY", "1");
    import(
        &s.lp,
        &[
            ("first@x.example", "", "active"),
            ("middle@x.example", "", "active"),
            ("later@x.example", "", "active"),
        ],
    )
    .await;
    let issue = s.lp.write_issue("content", "midway", "");
    let lp = Arc::new(s.lp);
    // At the first RCPT (while the sender waits for the reply), the
    // subscriber later in the queue unsubscribes, synchronously.
    let first_rcpt = Arc::new(std::sync::Mutex::new(None::<String>));
    {
        let lp = Arc::clone(&lp);
        let first_rcpt = Arc::clone(&first_rcpt);
        let done = AtomicBool::new(false);
        let rt = tokio::runtime::Handle::current();
        s.smtp.on_rcpt(move |rcpt| {
            if done.swap(true, Ordering::SeqCst) {
                return;
            }
            *first_rcpt.lock().unwrap() = Some(rcpt.to_string());
            // The hook runs on a blocking thread: waiting here holds the
            // RCPT reply until the unsubscribe is committed.
            rt.block_on(lp.ok(&["subscribers", "remove", "later@x.example"]));
        });
    }
    let out = send(&lp, &issue, &[]).await;
    assert_eq!(
        first_rcpt.lock().unwrap().as_deref(),
        Some("first@x.example"),
        "the queue goes in list order"
    );
    assert_eq!(
        copies(&s.smtp),
        one_each(&["first@x.example", "middle@x.example"]),
        "{out}"
    );
    // Its transaction began (the RCPT was seen) and was abandoned.
    assert_eq!(s.smtp.attempts("later@x.example"), 1);
    // Pipelined when offered: MAIL came with RCPT and DATA behind it.
    let pipelined = s.smtp.pipelined();
    if pipelining {
        assert_eq!(pipelined, 3, "every transaction pipelined");
    } else {
        assert_eq!(pipelined, 0, "nothing pipelined to a relay without it");
    }
    assert_eq!(counts(&lp, "midway").await, expect(0, 0, 2, 0, 1));
    assert_eq!(
        lp.status_of("later@x.example").await.as_deref(),
        Some("unsubscribed")
    );
}

// 5. The message on the wire.

fn parse_text(raw: &str) -> String {
    let m = MessageParser::default()
        .parse(raw.as_bytes())
        .expect("a parsable message");
    m.body_text(0).expect("a text part").into_owned()
}

/// Everything after `PUBLIC_URL/u/` up to the end of the token.
fn unsubscribe_token(s: &str) -> Option<String> {
    server::token_after(s, &format!("{PUBLIC_URL}/u/"))
}

/// An unfolded raw header value.
fn raw_header(m: &mail_parser::Message<'_>, name: &str) -> Option<String> {
    m.header_raw(name)
        .map(|v| v.replace("\r\n", "").replace('\n', "").trim().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_carry_the_contract_headers_and_mime_structure() {
    let mut s = Setup::sqlite().await;
    s.lp.set(
        "LETTERPRESS_NEWSLETTER__UNSUBSCRIBE_MAILTO",
        "unsubscribe@example.test",
    );
    s.lp.set("LETTERPRESS_NEWSLETTER__LIST_ID", "ferris.example.test");
    let (lp, smtp) = (&s.lp, &s.smtp);
    import(
        lp,
        &[
            ("ann@x.example", "Ann Müller", "active"),
            ("bob@x.example", "", "active"),
            ("eve@x.example", "Eve\r\nBcc: evil@x.example", "active"),
        ],
    )
    .await;
    let subject = "Grüße aus Köln 🦀";
    let issue = lp.path("content/umlaut.md");
    std::fs::create_dir_all(lp.path("content")).unwrap();
    std::fs::write(
        &issue,
        format!(
            "+++\ntitle = \"{subject}\"\nslug = \"umlaut\"\ndescription = \"Crabs on the Rhine\"\n+++\n\n\
             Hallo {{{{ subscriber_name(fallback=\"du\") }}}}, schöne Grüße.\n"
        ),
    )
    .unwrap();
    send(lp, &issue, &[]).await;
    let received = smtp.received();
    assert_eq!(received.len(), 3, "one message per subscriber");

    let mut feedback_ids = Vec::new();
    let mut tokens = HashMap::new();
    for r in &received {
        assert_eq!(r.rcpt_to.len(), 1, "one envelope recipient per message");
        let rcpt = &r.rcpt_to[0];
        let m = MessageParser::default()
            .parse(r.data.as_bytes())
            .expect("parsable");
        // multipart/alternative: text/plain, then text/html, both UTF-8.
        let root = m.root_part();
        let ct = root.content_type().expect("Content-Type");
        assert_eq!(
            (ct.ctype(), ct.subtype()),
            ("multipart", Some("alternative")),
            "{rcpt}"
        );
        let parts: Vec<_> = root
            .sub_parts()
            .expect("a multipart")
            .iter()
            .map(|&i| &m.parts[i as usize])
            .collect();
        let types: Vec<_> = parts
            .iter()
            .map(|p| {
                let ct = p.content_type().expect("part Content-Type");
                (
                    format!("{}/{}", ct.ctype(), ct.subtype().unwrap_or("")),
                    ct.attribute("charset").unwrap_or("").to_ascii_lowercase(),
                )
            })
            .collect();
        assert_eq!(
            types,
            [
                ("text/plain".to_string(), "utf-8".to_string()),
                ("text/html".to_string(), "utf-8".to_string())
            ],
            "{rcpt}"
        );
        let text = parts[0].text_contents().expect("text").to_string();
        let html = parts[1].text_contents().expect("html").to_string();
        assert!(text.contains("schöne Grüße"), "UTF-8 text decodes:\n{text}");

        // Identity headers.
        let from = m.from().and_then(|a| a.first()).expect("From");
        assert_eq!(from.address(), Some("news@example.test"));
        let to: Vec<_> = m.to().expect("To").iter().collect();
        assert_eq!(to.len(), 1, "{rcpt}: one To");
        assert_eq!(to[0].address(), Some(rcpt.as_str()));
        assert_eq!(m.subject(), Some(subject));
        let raw_subject = raw_header(&m, "Subject").expect("Subject");
        assert!(
            raw_subject.is_ascii() && raw_subject.to_ascii_lowercase().contains("=?utf-8?"),
            "a non-ASCII subject is RFC 2047 encoded: {raw_subject}"
        );
        assert!(m.date().is_some(), "Date");
        let message_id = m.message_id().expect("Message-ID");
        assert!(
            message_id.ends_with(&format!("@{FROM_DOMAIN}")) && message_id.len() > 20,
            "Message-ID <random@from-domain>: {message_id}"
        );
        assert!(
            raw_header(&m, "Message-ID").is_some_and(|v| v.starts_with('<') && v.ends_with('>')),
            "Message-ID in angle brackets"
        );

        // List headers.
        let list_id = raw_header(&m, "List-Id").expect("List-Id");
        assert!(list_id.ends_with("<ferris.example.test>"), "{list_id}");
        let unsub = raw_header(&m, "List-Unsubscribe").expect("List-Unsubscribe");
        let token = unsubscribe_token(&unsub).expect("a /u/TOKEN link");
        assert_eq!(
            unsub,
            format!(
                "<{PUBLIC_URL}/u/{token}>, <mailto:unsubscribe@example.test?subject=unsubscribe>"
            )
        );
        assert_eq!(
            raw_header(&m, "List-Unsubscribe-Post").as_deref(),
            Some("List-Unsubscribe=One-Click")
        );
        assert_eq!(raw_header(&m, "Precedence").as_deref(), Some("bulk"));
        feedback_ids.push(raw_header(&m, "Feedback-ID").expect("Feedback-ID"));

        // The recipient's own unsubscribe link, in both parts.
        let link = format!("{PUBLIC_URL}/u/{token}");
        assert!(text.contains(&link), "{rcpt}: text part has {link}");
        assert!(html.contains(&link), "{rcpt}: HTML part has {link}");
        tokens.insert(rcpt.clone(), token);

        // No header injection through the name.
        assert!(m.header("Bcc").is_none(), "{rcpt}: no Bcc header");
        assert!(m.bcc().is_none());
        assert!(
            !r.data.to_ascii_lowercase().contains("\nbcc:"),
            "{rcpt}: no Bcc line anywhere"
        );
        if rcpt == "eve@x.example" {
            let name = to[0].name().unwrap_or("");
            assert!(
                !name.contains('\r') && !name.contains('\n') && name.starts_with("Eve"),
                "the name stays one header value: {name:?}"
            );
        }
    }
    assert!(
        feedback_ids.iter().all(|f| f == &feedback_ids[0]),
        "Feedback-ID is per issue: {feedback_ids:?}"
    );
    let mut distinct: Vec<_> = tokens.values().collect();
    distinct.sort();
    distinct.dedup();
    assert_eq!(
        distinct.len(),
        3,
        "one unsubscribe link per recipient: {tokens:?}"
    );
    let all_rcpts: Vec<_> = received.iter().flat_map(|r| r.rcpt_to.clone()).collect();
    assert!(
        !all_rcpts.iter().any(|r| r.contains("evil")),
        "nobody else got a copy: {all_rcpts:?}"
    );

    // A subject with a line break cannot start a header either.
    let crlf = lp.path("content/crlf.md");
    std::fs::write(
        &crlf,
        "+++\ntitle = \"Hello\\r\\nBcc: evil@x.example\"\nslug = \"crlf\"\n+++\n\nHi.\n",
    )
    .unwrap();
    send(lp, &crlf, &[]).await;
    let received = smtp.received();
    assert_eq!(received.len(), 6);
    for r in &received[3..] {
        assert_eq!(r.rcpt_to.len(), 1);
        let m = MessageParser::default().parse(r.data.as_bytes()).unwrap();
        assert!(m.header("Bcc").is_none(), "no Bcc header from the subject");
        let subject = m.subject().unwrap_or("");
        assert!(
            subject.starts_with("Hello") && !subject.contains('\n'),
            "{subject:?}"
        );
    }
    s.finish().await;
}

// 6. DKIM, checked by an independent verifier.

/// A Python with dkimpy importable: the system's, or one installed with pip
/// into the target folder. `Err` says why not.
fn dkimpy() -> Result<Option<PathBuf>, String> {
    let has = |pythonpath: Option<&Path>| {
        let mut c = std::process::Command::new("python3");
        c.args(["-c", "import dkim"]);
        if let Some(p) = pythonpath {
            c.env("PYTHONPATH", p);
        }
        c.output().map(|o| o.status.success()).unwrap_or(false)
    };
    if has(None) {
        return Ok(None);
    }
    let target = Path::new(env!("CARGO_BIN_EXE_letterpress"))
        .parent()
        .and_then(Path::parent)
        .ok_or("no target folder")?
        .join("pydeps");
    if has(Some(&target)) {
        return Ok(Some(target));
    }
    let out = std::process::Command::new("python3")
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--target",
        ])
        .arg(&target)
        .arg("dkimpy")
        .output()
        .map_err(|e| format!("cannot run python3: {e}"))?;
    if has(Some(&target)) {
        Ok(Some(target))
    } else {
        Err(format!(
            "dkimpy is not installed and pip could not install it: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

const VERIFY_PY: &str = r#"
import logging, sys, dkim
logging.basicConfig(level=logging.DEBUG, stream=sys.stderr)
msg = open(sys.argv[1], "rb").read()
record = open(sys.argv[2], "rb").read()
d = dkim.DKIM(msg, logger=logging.getLogger("dkim"))
ok = d.verify(dnsfunc=lambda name, timeout=5: record)
print("VERIFIED" if ok else "FAILED")
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dkim_signature_verifies_independently() {
    use rsa::pkcs1::EncodeRsaPrivateKey;
    use rsa::pkcs8::EncodePublicKey;

    let mut s = Setup::sqlite().await;
    // 1024 bits keeps key generation quick in a debug build; dkimpy accepts it.
    let key = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 1024).expect("RSA key");
    let pem = key
        .to_pkcs1_pem(rsa::pkcs1::LineEnding::LF)
        .expect("PKCS#1 PEM");
    let key_path = s.lp.path("dkim.pem");
    std::fs::write(&key_path, pem.as_bytes()).unwrap();
    let spki = key
        .to_public_key()
        .to_public_key_der()
        .expect("SubjectPublicKeyInfo");
    use base64::Engine;
    let record = format!(
        "v=DKIM1; k=rsa; p={}",
        base64::engine::general_purpose::STANDARD.encode(spki.as_bytes())
    );
    s.lp.set("LETTERPRESS_DKIM__DOMAIN", FROM_DOMAIN)
        .set("LETTERPRESS_DKIM__SELECTOR", "lp2026")
        .set("LETTERPRESS_DKIM__PRIVATE_KEY_PATH", arg(&key_path))
        .set(
            "LETTERPRESS_NEWSLETTER__UNSUBSCRIBE_MAILTO",
            "unsubscribe@example.test",
        );
    let (lp, smtp) = (&s.lp, &s.smtp);
    import(
        lp,
        &[
            (
                "ann@x.example",
                "Ann Müller-Lüdenscheidt von und zu Hohenzollern-Sigmaringen",
                "active",
            ),
            ("bob@x.example", "", "active"),
        ],
    )
    .await;
    let issue = lp.path("content/signed.md");
    std::fs::create_dir_all(lp.path("content")).unwrap();
    std::fs::write(
        &issue,
        "+++\ntitle = \"Signed, sealed, delivered: a rather long subject line with Grüße that gets folded\"\n\
         slug = \"signed\"\n+++\n\nHallo {{ subscriber_name(fallback=\"du\") }}.  Trailing spaces  \n\nDone.\n",
    )
    .unwrap();
    send(lp, &issue, &[]).await;
    let received = smtp.received();
    assert_eq!(received.len(), 2);

    for r in &received {
        let m = MessageParser::default().parse(r.data.as_bytes()).unwrap();
        let sigs: Vec<_> = m
            .headers_raw()
            .filter(|(k, _)| k.eq_ignore_ascii_case("DKIM-Signature"))
            .map(|(_, v)| v.to_string())
            .collect();
        assert_eq!(sigs.len(), 1, "one DKIM-Signature");
        let sig: String = sigs[0].chars().filter(|c| !c.is_whitespace()).collect();
        let tag = |name: &str| {
            sig.split(';')
                .find_map(|t| t.strip_prefix(&format!("{name}=")))
                .map(str::to_string)
        };
        assert_eq!(tag("d").as_deref(), Some(FROM_DOMAIN));
        assert_eq!(tag("s").as_deref(), Some("lp2026"));
        let signed: Vec<String> = tag("h")
            .expect("h=")
            .split(':')
            .map(|h| h.to_ascii_lowercase())
            .collect();
        for h in [
            "from",
            "to",
            "subject",
            "date",
            "message-id",
            "list-id",
            "list-unsubscribe",
            "list-unsubscribe-post",
        ] {
            assert!(signed.iter().any(|s| s == h), "h= covers {h}: {signed:?}");
        }
    }

    let python = match dkimpy() {
        Ok(p) => p,
        Err(why) => {
            use std::io::Write;
            let _ = writeln!(std::io::stderr(), "skipped: DKIM verification: {why}");
            return;
        }
    };
    let record_path = s.lp.path("dns.txt");
    std::fs::write(&record_path, &record).unwrap();
    for (i, r) in received.iter().enumerate() {
        let msg_path = s.lp.path(&format!("signed-{i}.eml"));
        std::fs::write(&msg_path, &r.data).unwrap();
        let mut c = std::process::Command::new("python3");
        c.args(["-c", VERIFY_PY, arg(&msg_path), arg(&record_path)]);
        if let Some(p) = &python {
            c.env("PYTHONPATH", p);
        }
        let out = c.output().expect("run python3");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            stdout.contains("VERIFIED"),
            "dkimpy verifies the message to {:?}:\n{stdout}\n{}\n--- message ---\n{}",
            r.rcpt_to,
            String::from_utf8_lossy(&out.stderr),
            r.data
        );
    }
    s.finish().await;
}

// 7. Crash safety: kill -9 mid-send, send again.

/// Starts `send ISSUE` against a relay that accepts `accepted` messages and
/// then withholds its reply to DATA; returns once `in_flight` messages wait
/// for that reply (every connection the sender has is busy).
async fn send_until_held(
    lp: &Lp,
    smtp: &SmtpServer,
    issue: &Path,
    accepted: usize,
    in_flight: usize,
) -> server::Served {
    smtp.hold_data_after(accepted);
    let child = lp.start(&["send", arg(issue), "--yes", WAIT_ARG]);
    smtp.wait_until("messages accepted, then the next ones held", |s| {
        s.received().len() >= accepted && s.held() == in_flight
    })
    .await;
    child
}

async fn kill_mid_send_then_resend(s: &mut Setup) {
    const N: usize = 20;
    const K: usize = 5;
    const IN_FLIGHT: usize = 4;
    // Both runs: the dead worker's claims expire 2 s after they were made,
    // and the second run must wait for that rather than skip them.
    s.lp.set("LETTERPRESS_DELIVERY__LEASE", "2s")
        .set("LETTERPRESS_DELIVERY__CONCURRENCY", &IN_FLIGHT.to_string());
    let (lp, smtp) = (&s.lp, &s.smtp);
    let emails = import_active(lp, N).await;
    let issue = lp.write_issue("content", "crash", "");
    let mut child = send_until_held(lp, smtp, &issue, K, IN_FLIGHT).await;
    eventually(
        "status --json shows the accepted messages as sent",
        async || {
            let c = lp.issue_status("crash").await?;
            (c["sent"].as_u64() == Some(K as u64)).then_some(())
        },
    )
    .await;
    child.signal(libc::SIGKILL);
    let (status, _) = child.wait().await;
    assert!(!status.success(), "killed: {status}");
    // The relay now takes the messages it held (their sender never hears).
    smtp.release_held();

    let out = send(lp, &issue, &[]).await;
    let copies = copies(smtp);
    let missed: Vec<_> = emails.iter().filter(|e| !copies.contains_key(*e)).collect();
    assert!(
        missed.is_empty(),
        "missed after the crash: {missed:?}\n{out}"
    );
    let duplicates: usize = copies.values().map(|n| n - 1).sum();
    // Shown with --nocapture: how many of those in flight went out twice.
    eprintln!("kill -9 with {IN_FLIGHT} in flight: {duplicates} duplicate(s), 0 missed");
    assert!(
        duplicates <= IN_FLIGHT,
        "{duplicates} duplicates, more than the {IN_FLIGHT} in flight: {copies:?}"
    );
    assert_eq!(copies.len(), N, "nobody else: {copies:?}");
    assert_eq!(counts(lp, "crash").await, expect(0, 0, N as u64, 0, 0));
}

on_both_backends!(
    kill_9_mid_send_misses_no_one_sqlite,
    kill_9_mid_send_misses_no_one_postgres,
    kill_mid_send_then_resend
);

// 8. SIGTERM: stop claiming, finish what is in flight, record it.

async fn sigterm_mid_send_then_resend(s: &mut Setup) {
    const N: usize = 12;
    const K: usize = 3;
    const IN_FLIGHT: usize = 2;
    s.lp.set("LETTERPRESS_DELIVERY__CONCURRENCY", &IN_FLIGHT.to_string());
    let (lp, smtp) = (&s.lp, &s.smtp);
    let emails = import_active(lp, N).await;
    let issue = lp.write_issue("content", "term", "");
    let mut child = send_until_held(lp, smtp, &issue, K, IN_FLIGHT).await;
    child.terminate();
    child
        .wait_for_line("the stopping notice", |l| l.contains("stopping"))
        .await;
    // Only now do the messages in flight get their 250.
    smtp.release_held();
    let (status, lines) = child.wait().await;
    assert_eq!(
        status.code(),
        Some(130),
        "a stopped send says so:\n{}",
        lines.join("\n")
    );
    assert_eq!(
        smtp.received().len(),
        K + IN_FLIGHT,
        "nothing claimed after SIGTERM was sent"
    );
    assert_eq!(
        counts(lp, "term").await,
        expect((N - K - IN_FLIGHT) as u64, 0, (K + IN_FLIGHT) as u64, 0, 0),
        "the messages in flight are recorded as sent, the rest given back"
    );

    let out = send(lp, &issue, &[]).await;
    let all: Vec<&str> = emails.iter().map(String::as_str).collect();
    assert_eq!(copies(smtp), one_each(&all), "no duplicates:\n{out}");
    assert_eq!(counts(lp, "term").await, expect(0, 0, N as u64, 0, 0));
}

on_both_backends!(
    sigterm_finishes_in_flight_and_a_later_send_completes_sqlite,
    sigterm_finishes_in_flight_and_a_later_send_completes_postgres,
    sigterm_mid_send_then_resend
);

// 9. retry-failed, and a worker that knows the issue only from the store.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_failed_requeues_and_send_delivers() {
    let s = Setup::sqlite().await;
    let (lp, smtp) = (&s.lp, &s.smtp);
    smtp.rule(
        "picky@",
        Behavior::DataReply("554 5.7.1 rejected as spam".into()),
        Some(1),
    );
    let all = ["ok@x.example", "picky@x.example"];
    import(lp, &[(all[0], "", "active"), (all[1], "", "active")]).await;
    let issue = lp.write_issue("content", "retry", "");
    send(lp, &issue, &[]).await;
    assert_eq!(copies(smtp), one_each(&all[..1]));
    assert_eq!(counts(lp, "retry").await, expect(0, 0, 1, 1, 0));

    let out = lp.ok(&["retry-failed", "retry"]).await;
    assert!(out.contains("1 failed"), "{out}");
    assert_eq!(counts(lp, "retry").await, expect(1, 0, 1, 0, 0));
    send(lp, &issue, &[]).await;
    assert_eq!(copies(smtp), one_each(&all));
    assert_eq!(counts(lp, "retry").await, expect(0, 0, 2, 0, 0));
    assert_eq!(
        lp.status_of("picky@x.example").await.as_deref(),
        Some("active")
    );
    s.finish().await;
}

/// An address where nothing listens (bound, then closed).
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().unwrap().port()
}

/// Queues `issue` for every subscriber while the relay is unreachable:
/// `send --wait=0s` records one deferred attempt each and returns.
async fn enqueue_with_relay_down(lp: &Lp, issue: &Path, n: usize) {
    let out = lp
        .cmd(&["send", arg(issue), "--yes", "--wait=0s"])
        .env(
            "LETTERPRESS_DELIVERY__SMTP_URL",
            format!("smtp://127.0.0.1:{}", closed_port()),
        )
        .output()
        .await
        .expect("run send");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "send with the relay down: {stderr}");
    assert!(stderr.contains("still deferred"), "{stderr}");
    let slug = issue.file_stem().unwrap().to_str().unwrap();
    assert_eq!(counts(lp, slug).await, expect(0, n as u64, 0, 0, 0));
}

async fn worker_delivers_from_the_store(s: &mut Setup) {
    const N: usize = 6;
    let (lp, smtp) = (&s.lp, &s.smtp);
    let emails = import_active(lp, N).await;
    let issue = lp.write_issue("content", "stored", "");
    enqueue_with_relay_down(lp, &issue, N).await;
    // The worker has no file to read: only the store has the issue.
    std::fs::remove_file(&issue).unwrap();
    let worker = lp.start(&["worker"]);
    smtp.wait_until("every subscriber's copy", |s| s.received().len() >= N)
        .await;
    wait_all_sent(lp, "stored", N).await;
    stop_workers(vec![worker]).await;
    let all: Vec<&str> = emails.iter().map(String::as_str).collect();
    assert_eq!(copies(smtp), one_each(&all));
    let text = parse_text(&smtp.received()[0].data);
    assert!(text.contains("this is issue stored"), "{text}");
}

on_both_backends!(
    worker_delivers_an_issue_it_finds_in_the_store_sqlite,
    worker_delivers_an_issue_it_finds_in_the_store_postgres,
    worker_delivers_from_the_store
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_on_one_postgres_deliver_each_message_once() {
    const N: usize = 40;
    let Some(mut s) = Setup::postgres().await else {
        return;
    };
    // Small batches so that the two workers take turns at the queue.
    s.lp.set("LETTERPRESS_DELIVERY__BATCH_SIZE", "3")
        .set("LETTERPRESS_DELIVERY__CONCURRENCY", "2");
    let (lp, smtp) = (&s.lp, &s.smtp);
    let emails = import_active(lp, N).await;
    let issue = lp.write_issue("content", "shared", "");
    enqueue_with_relay_down(lp, &issue, N).await;
    let a = lp.start(&["worker"]);
    let b = lp.start(&["worker"]);
    smtp.wait_until("every subscriber's copy", |s| s.received().len() >= N)
        .await;
    wait_all_sent(lp, "shared", N).await;
    stop_workers(vec![a, b]).await;
    let all: Vec<&str> = emails.iter().map(String::as_str).collect();
    assert_eq!(copies(smtp), one_each(&all), "each message exactly once");
    assert_eq!(counts(lp, "shared").await, expect(0, 0, N as u64, 0, 0));
    s.finish().await;
}

// The file transport: one `.eml` per recipient, named for an operator.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_transport_names_each_file_by_delivery_and_address() {
    // No SMTP: the embedded default transport writes to the outbox.
    let lp = Lp::new();
    import(
        &lp,
        &[
            ("ann@x.example", "", "active"),
            ("o'brien/news@x.example", "", "active"),
        ],
    )
    .await;
    let issue = lp.write_issue("content", "filed", "");
    send(&lp, &issue, &[]).await;
    send(&lp, &issue, &[]).await;
    let folder = lp.path("outbox/filed");
    let mut names: Vec<String> = std::fs::read_dir(&folder)
        .unwrap_or_else(|e| panic!("{}: {e}", folder.display()))
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names.len(),
        2,
        "one file per recipient, none twice: {names:?}"
    );
    let stem_for = |address: &str| {
        names
            .iter()
            .find_map(|n| {
                let (id, rest) = n.split_once('-')?;
                (id.parse::<u64>().is_ok() && rest == format!("{address}.eml")).then_some(n)
            })
            .unwrap_or_else(|| panic!("no <id>-{address}.eml in {names:?}"))
            .clone()
    };
    let ann = stem_for("ann@x.example");
    let obrien = stem_for("o_brien_news@x.example");
    for (file, to) in [(ann, "ann@x.example"), (obrien, "o'brien/news@x.example")] {
        let raw = std::fs::read(folder.join(&file)).unwrap();
        let m = MessageParser::default().parse(&raw).expect("a message");
        let addr = m.to().and_then(|a| a.first()).and_then(|a| a.address());
        assert_eq!(addr, Some(to), "{file} is the message for {to}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_worker_keeps_its_claims_from_a_second_worker() {
    const N: usize = 30;
    let Some(mut s) = Setup::postgres().await else {
        return;
    };
    // Worker A claims 12 at a time and needs about 3.6 s for them (one
    // connection, 300 ms per message), longer than the 2 s lease; worker B
    // claims 2 at a time and so comes back to the queue often. A's unsent
    // claims must stay A's (it renews its leases while it works); if they
    // ran out, B would send them while A still goes through its batch.
    s.smtp.rule(
        "@",
        Behavior::SlowData(std::time::Duration::from_millis(300)),
        None,
    );
    s.lp.set("LETTERPRESS_DELIVERY__LEASE", "2s")
        .set("LETTERPRESS_DELIVERY__CONCURRENCY", "1");
    let emails = import_active(&s.lp, N).await;
    let issue = s.lp.write_issue("content", "slow", "");
    enqueue_with_relay_down(&s.lp, &issue, N).await;
    s.lp.set("LETTERPRESS_DELIVERY__BATCH_SIZE", "12");
    let a = s.lp.start(&["worker"]);
    s.lp.set("LETTERPRESS_DELIVERY__BATCH_SIZE", "2");
    let b = s.lp.start(&["worker"]);
    let (lp, smtp) = (&s.lp, &s.smtp);
    wait_all_sent(lp, "slow", N).await;
    stop_workers(vec![a, b]).await;
    let all: Vec<&str> = emails.iter().map(String::as_str).collect();
    assert_eq!(copies(smtp), one_each(&all), "each message exactly once");
    s.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_internationalised_address_is_delivered() {
    let s = Setup::sqlite().await;
    let all = ["jürgen@x.example", "ann@x.example"];
    import(
        &s.lp,
        &[(all[0], "Jürgen", "active"), (all[1], "", "active")],
    )
    .await;
    let issue = s.lp.write_issue("content", "eai", "");
    let out = send(&s.lp, &issue, &[]).await;
    assert_eq!(copies(&s.smtp), one_each(&all), "{out}");
    let r = s
        .smtp
        .received()
        .into_iter()
        .find(|r| r.rcpt_to == [all[0]])
        .expect("Jürgen's copy");
    let m = MessageParser::default().parse(r.data.as_bytes()).unwrap();
    let to = m.to().and_then(|a| a.first()).expect("To");
    assert_eq!(to.address(), Some(all[0]));
    assert_eq!(to.name(), Some("Jürgen"));
    assert_eq!(counts(&s.lp, "eai").await, expect(0, 0, 2, 0, 0));
    s.finish().await;
}
