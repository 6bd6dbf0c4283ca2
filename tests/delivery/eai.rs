//! An internationalised (SMTPUTF8) address.

use mail_parser::MessageParser;

use crate::helpers::*;

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
}

/// A relay that offers neither SMTPUTF8 nor 8BITMIME cannot carry a
/// message to a non-ASCII address however often it is tried: the delivery
/// fails at once, before MAIL FROM, blaming no one, and the others go.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_internationalised_address_to_a_seven_bit_relay_fails_at_once() {
    let s = Setup::sqlite().await;
    s.smtp.without_8bitmime_and_smtputf8();
    let all = ["jürgen@x.example", "ann@x.example"];
    import(
        &s.lp,
        &[(all[0], "Jürgen", "active"), (all[1], "", "active")],
    )
    .await;
    let issue = s.lp.write_issue("content", "eai7", "");
    // A short wait: settled at once, it needs none; were it deferred, it
    // would still be after this.
    let out = s.lp.ok(&["send", arg(&issue), "--yes", "--wait=10s"]).await;
    assert_eq!(copies(&s.smtp), one_each(&["ann@x.example"]), "{out}");
    assert_eq!(
        counts(&s.lp, "eai7").await,
        expect(0, 0, 1, 1, 0),
        "failed, not deferred: {out}"
    );
    assert_eq!(
        s.smtp.attempts(all[0]),
        0,
        "nothing of it reached the relay"
    );
    assert_eq!(
        s.lp.status_of(all[0]).await.as_deref(),
        Some("active"),
        "the relay's limits blame no subscriber"
    );
}
