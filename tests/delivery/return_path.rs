//! Correlation at send time: the envelope sender per delivery
//! (`delivery.return_path`, VERP) and the relay's queue id from its 250.

use letterpress_signing::{Keyring, ReturnPath};
use letterpress_testkit::{Behavior, SECRET, sql};

use crate::helpers::*;

const TEMPLATE: &str = "bounces+{token}@bounce.example.test";

async fn return_path_names_the_delivery(s: &mut Setup) {
    s.lp.set("LETTERPRESS_DELIVERY__RETURN_PATH", TEMPLATE);
    let (lp, smtp) = (&s.lp, &s.smtp);
    import(
        lp,
        &[
            ("ann@x.example", "", "active"),
            ("bob@x.example", "", "active"),
        ],
    )
    .await;
    smtp.rule(
        "ann@",
        Behavior::DataReply("250 2.0.0 Ok: queued as 4QzAnn01".into()),
        None,
    );
    let issue = lp.write_issue("content", "verp", "");
    send(lp, &issue, &[]).await;

    let rp = ReturnPath::parse(TEMPLATE).unwrap();
    let keys = Keyring::new(SECRET.as_bytes(), &[]).unwrap();
    let received = smtp.received();
    assert_eq!(received.len(), 2);
    let url = lp.database_url();
    for r in &received {
        let to = &r.rcpt_to[0];
        let delivery = rp
            .delivery_of(&keys, &r.mail_from)
            .unwrap_or_else(|| panic!("MAIL FROM {:?} names no delivery", r.mail_from));
        let subscriber = sql::query_i64(
            url,
            "SELECT subscriber_id FROM deliveries WHERE id = $1",
            delivery,
        )
        .await;
        assert_eq!(
            subscriber,
            Some(lp.id_of(to).await),
            "{to}: {}",
            r.mail_from
        );
        // The From header is unchanged.
        assert!(r.data.contains("From: "), "{}", r.data);
    }
    // The queue id of Ann's 250 is kept with her delivery; Bob's relay
    // gave none.
    let with_relay_id = |id: &'static str| async move {
        sql::query_i64(
            url,
            &format!("SELECT COUNT(*) FROM deliveries WHERE relay_id = '{id}' AND $1 = $1"),
            0,
        )
        .await
    };
    assert_eq!(with_relay_id("4QzAnn01").await, Some(1));
    assert_eq!(
        sql::query_i64(
            url,
            "SELECT COUNT(*) FROM deliveries WHERE relay_id IS NOT NULL AND $1 = $1",
            0
        )
        .await,
        Some(1)
    );
}
on_both_backends!(
    return_path_names_the_delivery_sqlite,
    return_path_names_the_delivery_postgres,
    return_path_names_the_delivery
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_return_path_the_envelope_sender_is_from() {
    let s = Setup::sqlite().await;
    import(&s.lp, &[("ann@x.example", "", "active")]).await;
    let issue = s.lp.write_issue("content", "plain", "");
    send(&s.lp, &issue, &[]).await;
    let received = s.smtp.received();
    assert_eq!(received.len(), 1);
    assert!(
        received[0].mail_from.ends_with(&format!("@{FROM_DOMAIN}")),
        "{}",
        received[0].mail_from
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_return_path_is_refused_naming_the_key() {
    let mut s = Setup::sqlite().await;
    s.lp.set("LETTERPRESS_DELIVERY__RETURN_PATH", "bounces@example.test");
    import(&s.lp, &[("ann@x.example", "", "active")]).await;
    let issue = s.lp.write_issue("content", "bad", "");
    let out = s.lp.run(&["send", issue.to_str().unwrap(), "--yes"]).await;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("delivery.return_path"), "{err}");
    assert!(s.smtp.received().is_empty());
}
