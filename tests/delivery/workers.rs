//! `worker`: an issue known only from the store, and several workers on
//! one PostgreSQL.

use std::path::Path;

use letterpress_testkit::{Behavior, Lp, Served, eventually};

use crate::helpers::*;

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
async fn stop_workers(workers: Vec<Served>) {
    for w in workers {
        let (status, lines) = w.stop().await;
        assert!(
            status.success(),
            "worker stops cleanly on SIGTERM: {status}\n{}",
            lines.join("\n")
        );
    }
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
}
