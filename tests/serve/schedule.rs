//! Scheduled delivery end to end: issue files with `send_at` in
//! `schedule.issues_dir`, sent by `letterpress serve` (catch-up at start and
//! cron ticks) or by `letterpress send --due`, to the kit's SMTP
//! relay. Every active subscriber gets exactly one copy; drafts and issues
//! whose time has not come get none.
//!
//! The cron test uses a 6-field line (seconds first) so it takes seconds,
//! not the minute a `* * * * *` line could make it wait.

use std::collections::HashMap;

use chrono::{DateTime, SubsecRound, Utc};
use letterpress_testkit::{Lp, PgDb, SmtpServer, eventually, header};

use crate::lp;

const PAST: &str = "send_at = \"2020-01-01T00:00:00Z\"";
const FUTURE: &str = "send_at = \"2099-01-01T00:00:00Z\"";

/// `n` subscribers, imported from a CSV file.
async fn import(lp: &Lp, prefix: &str, n: usize) -> Vec<String> {
    let emails: Vec<String> = (0..n).map(|i| format!("{prefix}{i}@example.com")).collect();
    let csv = format!("email\n{}\n", emails.join("\n"));
    std::fs::write(lp.path("list.csv"), csv).unwrap();
    lp.ok(&["subscribers", "import", "list.csv"]).await;
    emails
}

/// Copies per recipient, for those in `emails`, as a sorted map.
fn copies_of(smtp: &SmtpServer, emails: &[String]) -> HashMap<String, usize> {
    smtp.copies()
        .into_iter()
        .filter(|(k, _)| emails.contains(k))
        .collect()
}

fn once_each(emails: &[String]) -> HashMap<String, usize> {
    emails.iter().map(|e| (e.clone(), 1)).collect()
}

/// Waits until every delivery of `slug` is settled as sent.
async fn settled(lp: &Lp, slug: &str, n: u64) {
    eventually(
        &format!("{slug}: {n} sent, nothing in flight"),
        async || {
            let s = lp.issue_status(slug).await?;
            let busy = ["queued", "sending", "deferred"]
                .iter()
                .map(|k| s[k].as_u64().unwrap_or(0))
                .sum::<u64>();
            (s["sent"] == n && busy == 0).then_some(())
        },
    )
    .await;
}

/// Runs `serve` until everyone in `emails` has a copy and `slug` is
/// settled, then stops it.
async fn serve_until_sent(lp: &Lp, smtp: &SmtpServer, emails: &[String], slug: &str) {
    let served = lp.serve().await;
    smtp.wait_until("a copy for everyone", |s| {
        copies_of(s, emails).len() == emails.len()
    })
    .await;
    settled(lp, slug, emails.len() as u64).await;
    served.stop_ok().await;
}

/// Slugs in `status --json`.
async fn slugs(lp: &Lp) -> Vec<String> {
    let out = lp.run(&["status", "--json"]).await;
    let all: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).expect("JSON");
    let mut s: Vec<String> = all
        .iter()
        .filter_map(|i| i["slug"].as_str().map(String::from))
        .collect();
    s.sort();
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_catches_up_on_due_issues_once_and_leaves_drafts_and_future_ones() {
    let smtp = SmtpServer::start().await;
    let mut lp = lp().with_smtp(smtp.port);
    // The scheduler says when a tick is over, so a restart can be judged.
    lp.set(
        "LETTERPRESS_LOG",
        "warn,letterpress_publish::schedule=debug",
    );
    let emails = import(&lp, "reader", 5).await;
    lp.write_issue("issues", "due", PAST);
    lp.write_issue("issues", "draft", &format!("{PAST}\ndraft = true"));
    lp.write_issue("issues", "later", FUTURE);
    lp.write_issue("issues", "unscheduled", "");

    serve_until_sent(&lp, &smtp, &emails, "due").await;
    assert_eq!(copies_of(&smtp, &emails), once_each(&emails));
    assert_eq!(smtp.received().len(), 5, "nothing but the due issue");
    assert_eq!(slugs(&lp).await, ["due"]);

    // A restart catches up again and finds nothing left to send.
    let served = lp.serve().await;
    served
        .wait_for_line("the start-up tick", |l| l.contains("scheduler tick done"))
        .await;
    served.stop_ok().await;
    assert_eq!(smtp.received().len(), 5, "nothing sent twice");
    assert_eq!(slugs(&lp).await, ["due"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_issue_that_comes_due_while_serving_goes_out_at_the_next_cron_tick() {
    let smtp = SmtpServer::start().await;
    let mut lp = lp().with_smtp(smtp.port);
    lp.set("LETTERPRESS_SCHEDULE__CRON", "*/2 * * * * *");
    let emails = import(&lp, "reader", 4).await;
    // Whole seconds: the Date header that proves when it went out has no more.
    let send_at = Utc::now().trunc_subsecs(0) + chrono::Duration::seconds(4);
    lp.write_issue(
        "issues",
        "soon",
        &format!("send_at = \"{}\"", send_at.to_rfc3339()),
    );
    lp.write_issue("issues", "later", FUTURE);
    serve_until_sent(&lp, &smtp, &emails, "soon").await;
    assert_eq!(copies_of(&smtp, &emails), once_each(&emails));
    for r in smtp.received() {
        let date = header(&r.data, "Date").expect("Date header");
        let date = DateTime::parse_from_rfc2822(&date).expect("RFC 2822 date");
        assert!(
            date >= send_at,
            "sent at {date}, before its send_at {send_at}"
        );
    }
    assert_eq!(slugs(&lp).await, ["soon"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_due_without_a_daemon_sends_due_issues_once() {
    let smtp = SmtpServer::start().await;
    let lp = lp().with_smtp(smtp.port);
    let emails = import(&lp, "reader", 3).await;
    lp.write_issue("issues", "due-one", PAST);
    lp.write_issue("issues", "due-two", "send_at = \"2021-06-01 09:00\"");
    lp.write_issue("issues", "draft", &format!("{PAST}\ndraft = true"));
    lp.write_issue("issues", "later", FUTURE);

    lp.ok(&["send", "--due"]).await;
    let copies = copies_of(&smtp, &emails);
    assert_eq!(copies, emails.iter().map(|e| (e.clone(), 2)).collect());
    assert_eq!(slugs(&lp).await, ["due-one", "due-two"]);

    let again = lp.ok(&["send", "--due"]).await;
    assert!(again.contains("is due"), "{again}");
    assert_eq!(smtp.received().len(), 6, "the second run sends nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_on_one_postgres_send_each_subscriber_one_copy() {
    let Some(db) = PgDb::create().await else {
        return;
    };
    let smtp = SmtpServer::start().await;
    let mut lp = lp().with_smtp(smtp.port).with_database(&db.url);
    // Both schedulers tick every second, so they race on every tick.
    lp.set("LETTERPRESS_SCHEDULE__CRON", "* * * * * *");
    let emails = import(&lp, "reader", 40).await;
    lp.write_issue("issues", "due", PAST);
    let soon = Utc::now().trunc_subsecs(0) + chrono::Duration::seconds(3);
    lp.write_issue(
        "issues",
        "soon",
        &format!("send_at = \"{}\"", soon.to_rfc3339()),
    );
    let (a, b) = tokio::join!(lp.serve(), lp.serve());
    smtp.wait_until("two issues for everyone", |s| {
        s.received().len() >= 2 * emails.len()
    })
    .await;
    settled(&lp, "due", 40).await;
    settled(&lp, "soon", 40).await;
    tokio::join!(a.stop_ok(), b.stop_ok());
    let copies = copies_of(&smtp, &emails);
    assert_eq!(
        copies,
        emails.iter().map(|e| (e.clone(), 2)).collect(),
        "each subscriber one copy of each issue"
    );
    assert_eq!(smtp.received().len(), 80);
}

/// Publishing is one transaction: a scheduled issue whose enqueue fails is
/// not recorded (which the scheduler would take for "sent"), and it goes
/// out on a later tick once the cause is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduled_issue_whose_enqueue_fails_is_sent_on_a_later_tick() {
    let smtp = SmtpServer::start().await;
    let mut lp = lp().with_smtp(smtp.port);
    lp.set("LETTERPRESS_SCHEDULE__CRON", "* * * * * *");
    let emails = import(&lp, "reader", 3).await;
    lp.write_issue("issues", "due", PAST);
    // The database refuses new deliveries, as a full disk would.
    let db = format!("sqlite://{}", lp.path("lp.db").display());
    letterpress_testkit::sql::execute(
        &db,
        &[
            "CREATE TRIGGER refuse_deliveries BEFORE INSERT ON deliveries \
           BEGIN SELECT RAISE(ABORT, 'no room for deliveries'); END",
        ],
    )
    .await;

    let served = lp.serve().await;
    served
        .wait_for_line("a failed scheduler tick", |l| {
            l.contains("scheduler tick failed") && l.contains("no room for deliveries")
        })
        .await;
    assert_eq!(
        slugs(&lp).await,
        Vec::<String>::new(),
        "a failed publish records no issue, so the issue is still due"
    );
    assert!(smtp.received().is_empty());

    letterpress_testkit::sql::execute(&db, &["DROP TRIGGER refuse_deliveries"]).await;
    smtp.wait_until("a copy for everyone", |s| {
        copies_of(s, &emails).len() == emails.len()
    })
    .await;
    settled(&lp, "due", 3).await;
    served.stop_ok().await;
    assert_eq!(copies_of(&smtp, &emails), once_each(&emails));
    assert_eq!(slugs(&lp).await, ["due"]);
}

/// The process of `letterpress compose-stored FILE`, once it runs.
fn composer_child_of(file: &std::path::Path) -> Option<i32> {
    let wanted = file.display().to_string();
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<String> = cmdline
            .split(|&b| b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        if args.iter().any(|a| a == "compose-stored") && args.contains(&wanted) {
            return Some(pid);
        }
    }
    None
}

/// A named pipe nobody writes to: whoever reads it waits forever.
fn fifo(path: &std::path::Path) {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: mkfifo(3) with a NUL-terminated path we own.
    let rc = unsafe { libc::mkfifo(c.as_ptr(), 0o600) };
    assert_eq!(rc, 0, "mkfifo {}", path.display());
}

/// `serve` composes due issues in child processes: a child that crashes
/// (killed here with SIGABRT, as a stack overflow ends), one that hangs
/// (past `schedule.compose_timeout`) and one that hits the nesting limit
/// each cost only their issue, which is logged and not queued; the
/// server keeps answering and the good issue goes out. Before, the deep
/// issue alone aborted `serve` on its start-up catch-up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_due_issue_whose_composer_crashes_hangs_or_is_too_deep_costs_only_that_issue() {
    let smtp = SmtpServer::start().await;
    let mut lp = lp().with_smtp(smtp.port);
    lp.set("LETTERPRESS_SCHEDULE__COMPOSE_TIMEOUT", "5s");
    let emails = import(&lp, "reader", 3).await;
    // Both hanging issues include a pipe no one writes to.
    fifo(&lp.path("pipe.md"));
    let hanging = format!("{PAST}\n+++\n\n{{{{ include_md(path=\"pipe.md\") }}}}\n");
    let crash = lp.write_issue("issues", "crash", "");
    std::fs::write(
        &crash,
        format!("+++\ntitle = \"Crash\"\nslug = \"crash\"\n{hanging}"),
    )
    .unwrap();
    let stuck = lp.path("issues/stuck.md");
    std::fs::write(
        &stuck,
        format!("+++\ntitle = \"Stuck\"\nslug = \"stuck\"\n{hanging}"),
    )
    .unwrap();
    std::fs::write(
        lp.path("issues/deep.md"),
        format!(
            "+++\ntitle = \"Deep\"\nslug = \"deep\"\n{PAST}\n+++\n\nIntro.\n\n{} deep\n",
            ">".repeat(5000)
        ),
    )
    .unwrap();
    lp.write_issue("issues", "good", PAST);

    let served = lp.serve().await;
    // Files are taken in name order: crash.md first.
    let pid = eventually("the child composing crash.md", async || {
        composer_child_of(&crash)
    })
    .await;
    // SAFETY: kill(2) on the child process found above.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGABRT) }, 0);
    served
        .wait_for_line("the crash logged", |l| {
            l.contains("cannot compose a due issue") && l.contains("crashed (signal 6)")
        })
        .await;
    served
        .wait_for_line("the deep issue logged with its line", |l| {
            l.contains("nesting deeper than 100 at") && l.contains("deep.md:9")
        })
        .await;
    smtp.wait_until("the good issue for everyone", |s| {
        copies_of(s, &emails).len() == emails.len()
    })
    .await;
    settled(&lp, "good", 3).await;
    served
        .wait_for_line("the hanging child killed", |l| {
            l.contains("schedule.compose_timeout") && l.contains("stuck.md")
        })
        .await;
    let health = reqwest::get(served.url("/healthz"))
        .await
        .expect("GET /healthz");
    assert_eq!(health.status(), 200, "the server still answers");
    assert_eq!(composer_child_of(&stuck), None, "the hanging child is gone");
    served.stop_ok().await;
    assert_eq!(copies_of(&smtp, &emails), once_each(&emails));
    assert_eq!(slugs(&lp).await, ["good"], "only the good issue is queued");
}
