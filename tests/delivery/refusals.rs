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

/// A 421 to MAIL FROM on a pooled connection is the relay's answer, not a
/// connection gone stale: the delivery is deferred, the brake engages, and
/// the message goes on the retry (not at once on a fresh connection).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_421_on_a_pooled_connection_defers_and_brakes() {
    let mut s = Setup::sqlite().await;
    // One connection: the second message goes on the first one's.
    s.lp.set("LETTERPRESS_DELIVERY__CONCURRENCY", "1");
    s.smtp
        .reply_to_mail_on_a_reused_connection("421 4.7.0 too many messages, slow down", 1);
    let all = ["ann@x.example", "bob@x.example"];
    import(&s.lp, &[(all[0], "", "active"), (all[1], "", "active")]).await;
    let issue = s.lp.write_issue("content", "pooled421", "");
    let out = send(&s.lp, &issue, &[]).await;
    assert_eq!(s.smtp.reused_mail_replies(), 1, "{out}");
    assert_eq!(copies(&s.smtp), one_each(&all), "{out}");
    assert_eq!(counts(&s.lp, "pooled421").await, expect(0, 0, 2, 0, 0));

    // What was recorded: one attempt deferred on the 421, one sent each.
    let db = format!("sqlite://{}", s.lp.path("lp.db").display());
    let store = letterpress_store::Store::connect(&db)
        .await
        .expect("the store");
    let mut attempts = Vec::new();
    for delivery_id in 1..=2 {
        attempts.extend(store.attempts(delivery_id).await.expect("attempts"));
    }
    let outcomes: Vec<(&str, &str)> = attempts
        .iter()
        .map(|a| (a.outcome.as_str(), a.reply.as_str()))
        .collect();
    let deferred: Vec<_> = outcomes.iter().filter(|(o, _)| *o == "deferred").collect();
    assert_eq!(deferred.len(), 1, "one deferral: {outcomes:?}\n{out}");
    assert!(
        deferred[0].1.starts_with("421 4.7.0"),
        "deferred on the 421: {outcomes:?}"
    );
    assert_eq!(outcomes.iter().filter(|(o, _)| *o == "sent").count(), 2);
    assert!(
        out.contains("server asked to slow down"),
        "the brake engaged (a warning): {out}"
    );
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
