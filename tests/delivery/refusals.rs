//! What relays refuse: hard bounces, policy rejections, "slow down", and a
//! repeated EHLO.

use letterpress_testkit::Behavior;

use crate::helpers::*;

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
}
