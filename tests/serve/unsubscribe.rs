//! RFC 8058 one-click unsubscribe and the page behind the link, and an
//! unsubscribe that wins against the message in its SMTP transaction.

use std::collections::HashMap;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use letterpress_signing::{Keyring, Purpose};
use letterpress_testkit::{
    NEWSLETTER, SmtpServer, WAIT, client, eventually, header, list_unsubscribe_token,
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
