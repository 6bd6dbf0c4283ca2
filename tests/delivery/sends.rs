//! One copy per active subscriber: idempotent sends, changed content,
//! dry runs and test copies.

use crate::helpers::*;

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
