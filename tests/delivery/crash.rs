//! Crash safety: `kill -9` mid-send, then send again; SIGTERM stops
//! claiming, finishes what is in flight and records it.

use std::path::Path;

use letterpress_testkit::{Lp, Served, SmtpServer, eventually};

use crate::helpers::*;

/// Starts `send ISSUE` against a relay that accepts `accepted` messages and
/// then withholds its reply to DATA; returns once `in_flight` messages wait
/// for that reply (every connection the sender has is busy).
async fn send_until_held(
    lp: &Lp,
    smtp: &SmtpServer,
    issue: &Path,
    accepted: usize,
    in_flight: usize,
) -> Served {
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
