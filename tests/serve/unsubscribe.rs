//! RFC 8058 one-click unsubscribe and the page behind the link, and an
//! unsubscribe that wins against the message in its SMTP transaction.

use std::collections::HashMap;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use letterpress_signing::{Keyring, Purpose};
use letterpress_testkit::{
    NEWSLETTER, PgDb, SmtpServer, WAIT, client, eventually, header, list_unsubscribe_token,
};
use reqwest::StatusCode;
use reqwest::header::{CONTENT_TYPE, LOCATION};

use crate::lp;

/// Recipient -> the one message it received.
fn by_recipient(smtp: &SmtpServer) -> HashMap<String, String> {
    let mut m = HashMap::new();
    for r in smtp.received() {
        for to in r.rcpt_to {
            m.insert(to, r.data.clone());
        }
    }
    m
}

/// The token with its byte `i` replaced by `f(old)`.
fn with_byte(token: &str, i: usize, f: impl Fn(u8) -> u8) -> String {
    let mut raw = URL_SAFE_NO_PAD.decode(token).expect("tokens are base64url");
    raw[i] = f(raw[i]);
    URL_SAFE_NO_PAD.encode(raw)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_click_unsubscribe_as_mailbox_providers_send_it() {
    let smtp = SmtpServer::start().await;
    let lp = lp().with_smtp(smtp.port);
    lp.add(&["alice@example.com", "bob@example.com", "carol@example.com"])
        .await;
    let issue = lp.write_issue("drafts", "one-click", "");
    lp.ok(&["send", issue.to_str().unwrap(), "--yes"]).await;
    let mail = by_recipient(&smtp);
    assert_eq!(mail.len(), 3, "one message per subscriber");
    let token = |e: &str| list_unsubscribe_token(&mail[e]);
    for m in mail.values() {
        assert_eq!(
            header(m, "List-Unsubscribe-Post").as_deref(),
            Some("List-Unsubscribe=One-Click")
        );
    }
    let (alice, bob, carol) = (
        token("alice@example.com"),
        token("bob@example.com"),
        token("carol@example.com"),
    );

    let served = lp.serve().await;
    let http = client();
    let u = |t: &str| served.url(&format!("/u/{t}"));

    // A link scanner's GET: a page that names the newsletter, shows the
    // address masked and offers a POST form; nothing changes.
    let page = http.get(u(&alice)).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.unwrap();
    assert!(html.contains(NEWSLETTER), "{html}");
    assert!(html.contains("a****@example.com"), "{html}");
    assert!(!html.contains("alice@example.com"), "address is masked");
    assert!(html.contains(r#"<form method="post""#), "{html}");
    assert!(!html.contains("<script"), "no JavaScript needed");
    assert_eq!(lp.status_of("alice@example.com").await.unwrap(), "active");

    // Gmail's one-click: urlencoded, no redirect, 200; idempotent.
    for _ in 0..2 {
        let r = http
            .post(u(&alice))
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body("List-Unsubscribe=One-Click")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert!(r.headers().get(LOCATION).is_none(), "no redirect");
    }
    assert_eq!(
        lp.status_of("alice@example.com").await.unwrap(),
        "unsubscribed"
    );
    assert_eq!(lp.status_of("bob@example.com").await.unwrap(), "active");
    // The page now says so, with no button to press.
    let html = http
        .get(u(&alice))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(html.contains("You are unsubscribed"), "{html}");
    assert!(!html.contains("<form"), "{html}");

    // The same field as multipart/form-data, as other providers send it.
    for _ in 0..2 {
        let form = reqwest::multipart::Form::new().text("List-Unsubscribe", "One-Click");
        let r = http.post(u(&bob)).multipart(form).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert!(r.headers().get(LOCATION).is_none(), "no redirect");
    }
    assert_eq!(
        lp.status_of("bob@example.com").await.unwrap(),
        "unsubscribed"
    );

    // Tokens that must not verify: none of them touches carol.
    let carol_id = lp.id_of("carol@example.com").await;
    let forged = Keyring::new(b"another-secret-0123456789abcdef0123", &[])
        .unwrap()
        .token(Purpose::Unsubscribe, carol_id, 0, None);
    let truncated = carol[..carol.len() - 2].to_string();
    // Alice's token pointed at carol: byte 9 is the low byte of the id.
    let retargeted = with_byte(&alice, 9, |_| carol_id as u8);
    // Carol's own token with one byte of its MAC changed.
    let bad_mac = with_byte(&carol, 20, |b| b ^ 1);
    let confirm = lp.token(Purpose::Confirm, carol_id).await;
    for bad in [&forged, &truncated, &retargeted, &bad_mac, &confirm] {
        let r = http
            .post(u(bad))
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body("List-Unsubscribe=One-Click")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "POST /u/{bad}");
        let r = http.get(u(bad)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "GET /u/{bad}");
    }
    assert_eq!(lp.status_of("carol@example.com").await.unwrap(), "active");

    served.stop_ok().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unsubscribe_answered_before_data_stops_the_message_in_its_transaction() {
    unsubscribe_while_the_relay_holds_rcpt(None).await;
}

/// The same on PostgreSQL, where the status gate runs two queries at once
/// (`sender::status_gate`): the answer must still come from a query that
/// began after the recipient was accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unsubscribe_answered_before_data_stops_the_message_on_postgres() {
    let Some(db) = PgDb::create().await else {
        return;
    };
    unsubscribe_while_the_relay_holds_rcpt(Some(&db.url)).await;
}

/// Sends an issue to held@ and other@ while the relay sits on held@'s RCPT,
/// unsubscribes held@ meanwhile, and checks that only other@'s copy went:
/// on the default SQLite file, or on the PostgreSQL `database`.
async fn unsubscribe_while_the_relay_holds_rcpt(database: Option<&str>) {
    let smtp = SmtpServer::start().await;
    // The relay sits on held@'s RCPT until the test has unsubscribed it:
    // the worker has looked at the subscriber and begun the transaction.
    let (arrived_tx, mut arrived) = tokio::sync::mpsc::unbounded_channel::<()>();
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    let release_rx = std::sync::Mutex::new(release_rx);
    smtp.on_rcpt(move |rcpt| {
        if rcpt == "held@example.com" {
            let _ = arrived_tx.send(());
            let _ = release_rx.lock().unwrap().recv();
        }
    });
    let mut lp = lp().with_smtp(smtp.port);
    if let Some(url) = database {
        lp = lp.with_database(url);
    }
    lp.set("LETTERPRESS_DELIVERY__CONCURRENCY", "1");
    lp.add(&["held@example.com", "other@example.com"]).await;
    let held_id = lp.id_of("held@example.com").await;
    lp.write_issue("issues", "gate", "send_at = \"2020-01-01T00:00:00Z\"");
    let served = lp.serve().await;
    tokio::time::timeout(WAIT, arrived.recv())
        .await
        .expect("held@'s transaction begins");
    let r = client()
        .post(served.url(&format!(
            "/u/{}",
            lp.token(Purpose::Unsubscribe, held_id).await
        )))
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body("List-Unsubscribe=One-Click")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    release_tx.send(()).unwrap();
    smtp.wait_until("other@'s copy", |s| {
        s.copies().contains_key("other@example.com")
    })
    .await;
    let issue = eventually("the issue settled", async || {
        let s = lp.issue_status("gate").await?;
        let open = ["queued", "sending", "deferred"]
            .iter()
            .map(|k| s[k].as_u64().unwrap_or(0))
            .sum::<u64>();
        (open == 0).then_some(s)
    })
    .await;
    served.stop_ok().await;
    assert_eq!(
        (&issue["sent"], &issue["skipped"], &issue["failed"]),
        (&1.into(), &1.into(), &0.into()),
        "{issue}"
    );
    assert_eq!(
        smtp.copies(),
        HashMap::from([("other@example.com".to_string(), 1)]),
        "the message in the transaction was abandoned before it went"
    );
    assert_eq!(smtp.attempts("held@example.com"), 1);
}

/// POSTs a one-click unsubscribe for `token` and returns the status.
async fn one_click(served: &letterpress_testkit::Served, token: &str) -> StatusCode {
    client()
        .post(served.url(&format!("/u/{token}")))
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body("List-Unsubscribe=One-Click")
        .send()
        .await
        .unwrap()
        .status()
}

/// The review's scenario: the newest subscriber is forgotten and someone
/// else signs up; the forgotten reader's unsubscribe and confirmation
/// links (one from an issue, one from their own signup) act on nobody.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forgotten_readers_links_do_not_act_on_the_next_subscriber() {
    let smtp = SmtpServer::start().await;
    let mut lp = lp().with_smtp(smtp.port);
    lp.set("LETTERPRESS_SERVER__SIGNUP_PER_MINUTE", "100");
    let served = lp.serve().await;
    let http = client();
    let signup = |email: &'static str| {
        http.post(served.url("/subscribe"))
            .form(&[("email", email)])
            .send()
    };
    // The first reader signs up, confirms, and gets an issue.
    assert_eq!(
        signup("first@example.com").await.unwrap().status(),
        StatusCode::SEE_OTHER
    );
    smtp.wait_until("first@'s confirmation", |s| {
        s.copies().contains_key("first@example.com")
    })
    .await;
    let confirm_first = letterpress_testkit::token_after(
        &letterpress_testkit::text_body(&by_recipient(&smtp)["first@example.com"]),
        "/confirm/",
    )
    .expect("a confirmation link");
    let r = http
        .post(served.url(&format!("/confirm/{confirm_first}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let issue = lp.write_issue("drafts", "for-first", "");
    lp.ok(&["send", issue.to_str().unwrap(), "--yes"]).await;
    let unsubscribe_first = list_unsubscribe_token(
        &smtp
            .received()
            .into_iter()
            .rev()
            .find(|r| r.rcpt_to == ["first@example.com"])
            .expect("the issue")
            .data,
    );

    // Forgotten, as the newest subscriber; then a stranger signs up.
    let first_id = lp.id_of("first@example.com").await;
    lp.ok(&["subscribers", "remove", "first@example.com", "--forget"])
        .await;
    assert_eq!(
        signup("stranger@example.com").await.unwrap().status(),
        StatusCode::SEE_OTHER
    );
    smtp.wait_until("stranger@'s confirmation", |s| {
        s.copies().contains_key("stranger@example.com")
    })
    .await;
    let stranger_id = lp.id_of("stranger@example.com").await;
    assert_ne!(stranger_id, first_id, "an id is never handed out twice");

    // The old links: 404, and the stranger is untouched (still pending,
    // neither confirmed by the old confirmation link nor unsubscribed).
    assert_eq!(
        one_click(&served, &unsubscribe_first).await,
        StatusCode::NOT_FOUND
    );
    let r = http
        .get(served.url(&format!("/u/{unsubscribe_first}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = http
        .post(served.url(&format!("/confirm/{confirm_first}")))
        .send()
        .await
        .unwrap();
    assert_ne!(
        r.status(),
        StatusCode::OK,
        "the old confirmation confirms nobody"
    );
    assert_eq!(
        lp.statuses().await,
        [("stranger@example.com".to_string(), "pending".to_string())].into()
    );
    served.stop_ok().await;
}

/// A database from before token bindings (made by that build; see
/// tests/fixtures/before-bindings): after the upgrade, the links its
/// subscribers were sent keep working for them, and the forgotten reader's
/// link does not act on whoever is added next, even under the same id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn links_sent_before_token_bindings_keep_working_for_their_subscribers_only() {
    let fixture = letterpress_testkit::repo().join("tests/fixtures/before-bindings");
    let mut lp = lp();
    std::fs::copy(fixture.join("letterpress.db"), lp.path("lp.db")).expect("copy the old database");
    lp.set(
        "LETTERPRESS_SERVER__SECRET",
        "legacy-fixture-secret-0123456789abcdef",
    );
    let links: HashMap<String, String> = std::fs::read_to_string(fixture.join("links.txt"))
        .expect("links.txt")
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(stem, token)| {
            (
                stem.split_once('-').unwrap().1.to_string(),
                token.to_string(),
            )
        })
        .collect();
    lp.ok(&["migrate"]).await;
    // Every row, id and delivery survived the rebuild of the table.
    assert_eq!(lp.id_of("ada@example.com").await, 1);
    assert_eq!(lp.id_of("bob@example.com").await, 2);
    let status = lp
        .issue_status("before-bindings")
        .await
        .expect("the old issue");
    assert_eq!(
        (status["total"].as_u64(), status["sent"].as_u64()),
        (Some(3), Some(3))
    );
    // Someone new may get the forgotten reader's old id; never its links.
    lp.add(&["dan@example.com"]).await;

    let served = lp.serve().await;
    assert_eq!(
        one_click(&served, &links["cy@example.com"]).await,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        one_click(&served, &links["ada@example.com"]).await,
        StatusCode::OK
    );
    served.stop_ok().await;
    let statuses = lp.statuses().await;
    assert_eq!(
        statuses["ada@example.com"], "unsubscribed",
        "an old link works for its reader"
    );
    assert_eq!(statuses["bob@example.com"], "active");
    assert_eq!(statuses["dan@example.com"], "active", "and for nobody else");
}

/// A test copy's link is a real, signed link that names no subscriber.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_test_copys_unsubscribe_link_says_it_changed_nothing() {
    let smtp = SmtpServer::start().await;
    let lp = lp().with_smtp(smtp.port);
    lp.add(&["reader@example.com"]).await;
    let issue = lp.write_issue("drafts", "proof", "");
    lp.ok(&[
        "send",
        issue.to_str().unwrap(),
        "--to",
        "editor@example.com",
    ])
    .await;
    let token = list_unsubscribe_token(&by_recipient(&smtp)["editor@example.com"]);
    let served = lp.serve().await;
    let page = client()
        .get(served.url(&format!("/u/{token}")))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    assert!(page.text().await.unwrap().contains("test copy"));
    let r = client()
        .post(served.url(&format!("/u/{token}")))
        .body("List-Unsubscribe=One-Click")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let text = r.text().await.unwrap();
    assert!(
        text.contains("test copy") && text.contains("nothing was changed"),
        "{text}"
    );
    assert!(!text.contains("You are unsubscribed"), "{text}");
    served.stop_ok().await;
    assert_eq!(
        lp.status_of("reader@example.com").await.as_deref(),
        Some("active")
    );
}
