//! Deferrals (451, a dropped connection, a stalled server), the give-up
//! age, and `retry-failed`.

use letterpress_testkit::Behavior;

use crate::helpers::*;

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
}

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
}
