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
