//! `letterpress serve` end to end: the built binary on a free port, a real
//! HTTP client, a real SQLite file and the in-process SMTP server.
//!
//! Covers RFC 8058 one-click unsubscribe and the page behind the link,
//! signed webhooks, double opt-in signup, health and metrics, JSON logs and
//! the graceful stop on SIGTERM. Scheduled delivery is in
//! `serve_schedule.rs`, the load test in `serve_load.rs`.

#![cfg(unix)]

#[path = "support/server.rs"]
mod server;
#[path = "support/smtp.rs"]
mod smtp;

use std::collections::HashMap;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use letterpress_signing::{Keyring, Purpose, sign_webhook};
use reqwest::StatusCode;
use reqwest::header::{CONTENT_TYPE, LOCATION};
use server::{Lp, NEWSLETTER, PUBLIC_URL, WEBHOOK_SECRET, client, eventually};
use smtp::SmtpServer;

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
    let lp = Lp::new().with_smtp(smtp.port);
    lp.add(&["alice@example.com", "bob@example.com", "carol@example.com"])
        .await;
    let issue = lp.write_issue("drafts", "one-click", "");
    lp.ok(&["send", issue.to_str().unwrap(), "--yes"]).await;
    let mail = by_recipient(&smtp);
    assert_eq!(mail.len(), 3, "one message per subscriber");
    let token = |e: &str| server::list_unsubscribe_token(&mail[e]);
    for m in mail.values() {
        assert_eq!(
            server::header(m, "List-Unsubscribe-Post").as_deref(),
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
        .token(Purpose::Unsubscribe, carol_id, None);
    let truncated = carol[..carol.len() - 2].to_string();
    // Alice's token pointed at carol: byte 8 is the low byte of the id.
    let retargeted = with_byte(&alice, 8, |_| carol_id as u8);
    // Carol's own token with one byte of its MAC changed.
    let bad_mac = with_byte(&carol, 20, |b| b ^ 1);
    let confirm = lp.token(Purpose::Confirm, carol_id);
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

/// POSTs `body` to a webhook with an optional signature.
async fn webhook(
    served: &server::Served,
    path: &str,
    body: impl Into<Vec<u8>>,
    signature: Option<&str>,
) -> (StatusCode, serde_json::Value) {
    let mut r = client()
        .post(served.url(path))
        .header(CONTENT_TYPE, "application/json")
        .body(body.into());
    if let Some(s) = signature {
        r = r.header("X-Letterpress-Signature", s);
    }
    let r = r.send().await.unwrap();
    let status = r.status();
    let json = r.json().await.unwrap_or(serde_json::Value::Null);
    (status, json)
}

/// A signed webhook call.
async fn signed(
    served: &server::Served,
    path: &str,
    body: &str,
) -> (StatusCode, serde_json::Value) {
    let sig = sign_webhook(WEBHOOK_SECRET.as_bytes(), body.as_bytes());
    webhook(served, path, body, Some(&sig)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_are_authenticated_and_suppress_addresses() {
    let smtp = SmtpServer::start().await;
    let mut lp = Lp::new().with_smtp(smtp.port);
    lp.set("LETTERPRESS_SERVER__SOFT_BOUNCE_LIMIT", "3");
    let addresses = [
        "keep@example.com",
        "hard@example.com",
        "soft@example.com",
        "complaint@example.com",
        "gone@example.com",
        "gone2@example.com",
    ];
    lp.add(&addresses).await;
    let served = lp.serve().await;

    let keep_unsub = r#"{"email": "keep@example.com"}"#;
    let keep_bounce = r#"{"email": "keep@example.com", "type": "hard"}"#;
    for (path, body) in [
        ("/webhooks/unsubscribe", keep_unsub),
        ("/webhooks/bounce", keep_bounce),
    ] {
        let (s, _) = webhook(&served, path, body, None).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{path}: missing signature");
        let wrong = sign_webhook(b"not-the-webhook-secret", body.as_bytes());
        let (s, _) = webhook(&served, path, body, Some(&wrong)).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{path}: wrong key");
        let (s, _) = webhook(&served, path, body, Some("sha256=zz")).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{path}: garbage signature");
        // A captured, validly signed call replayed with another address.
        let sig = sign_webhook(WEBHOOK_SECRET.as_bytes(), body.as_bytes());
        let altered = body.replace("keep@", "hard@");
        let (s, _) = webhook(&served, path, altered, Some(&sig)).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{path}: altered body");
        let (s, _) = signed(&served, path, r#"{"email": "keep@example.com""#).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{path}: malformed JSON");
        // More than 64 KB, signed: refused for its size before anything else.
        let big = format!(
            r#"{{"email": "keep@example.com", "type": "hard", "pad": "{}"}}"#,
            "x".repeat(65 * 1024)
        );
        let (s, _) = signed(&served, path, &big).await;
        assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE, "{path}: 65 KB body");
        let unknown = body.replace("keep@", "nobody@");
        let (s, json) = signed(&served, path, &unknown).await;
        assert_eq!(s, StatusCode::OK, "{path}: unknown address");
        assert_eq!(json["changed"], 0, "{path}: {json}");
    }
    let (s, json) = signed(
        &served,
        "/webhooks/bounce",
        r#"{"email": "keep@example.com", "type": "bogus"}"#,
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "unknown type: {json}");
    assert_eq!(lp.status_of("keep@example.com").await.unwrap(), "active");

    let bounce = |email: &str, kind: &str| format!(r#"{{"email": "{email}", "type": "{kind}"}}"#);
    let (s, json) = signed(
        &served,
        "/webhooks/bounce",
        &bounce("hard@example.com", "hard"),
    )
    .await;
    assert_eq!((s, json["changed"].as_u64()), (StatusCode::OK, Some(1)));
    let (s, _) = signed(
        &served,
        "/webhooks/bounce",
        &bounce("complaint@example.com", "complaint"),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    // Soft bounces suppress only at the limit (3 in a row).
    for n in 1..=3 {
        let (s, json) = signed(
            &served,
            "/webhooks/bounce",
            &bounce("soft@example.com", "soft"),
        )
        .await;
        assert_eq!(s, StatusCode::OK);
        let expected = if n < 3 { "active" } else { "bounced" };
        assert_eq!(
            lp.status_of("soft@example.com").await.unwrap(),
            expected,
            "after {n} soft bounces ({json})"
        );
    }
    let (s, json) = signed(
        &served,
        "/webhooks/unsubscribe",
        r#"{"email": "gone@example.com"}"#,
    )
    .await;
    assert_eq!((s, json["changed"].as_u64()), (StatusCode::OK, Some(1)));
    let (s, json) = signed(
        &served,
        "/webhooks/unsubscribe",
        r#"{"emails": ["GONE2@example.com", "nobody@example.com"]}"#,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(json["changed"].as_u64(), Some(1), "{json}");

    let statuses = lp.statuses().await;
    let expected = [
        ("keep@example.com", "active"),
        ("hard@example.com", "bounced"),
        ("soft@example.com", "bounced"),
        ("complaint@example.com", "complained"),
        ("gone@example.com", "unsubscribed"),
        ("gone2@example.com", "unsubscribed"),
    ];
    for (e, st) in expected {
        assert_eq!(statuses[e], st, "{e}");
    }

    // A send started afterwards reaches only the address still active.
    let issue = lp.write_issue("drafts", "after-webhooks", "");
    lp.ok(&["send", issue.to_str().unwrap(), "--yes"]).await;
    let copies = smtp.copies();
    assert_eq!(
        copies,
        HashMap::from([("keep@example.com".to_string(), 1)]),
        "suppressed addresses get nothing"
    );
    served.stop_ok().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn double_opt_in_signup() {
    let smtp = SmtpServer::start().await;
    let mut lp = Lp::new().with_smtp(smtp.port);
    lp.set("LETTERPRESS_SERVER__SIGNUP_PER_MINUTE", "1000");
    lp.add(&["active@example.com", "gone@example.com"]).await;
    lp.ok(&["subscribers", "remove", "gone@example.com"]).await;
    let served = lp.serve().await;
    let http = client();
    let form = |email: &str| {
        http.post(served.url("/subscribe"))
            .form(&[("email", email), ("name", "Reader")])
    };
    let json = |email: &str| {
        http.post(served.url("/subscribe"))
            .json(&serde_json::json!({ "email": email }))
    };
    let confirmations = |to: &str| {
        smtp.received()
            .into_iter()
            .filter(|r| r.rcpt_to.iter().any(|t| t == to))
            .map(|r| r.data)
            .collect::<Vec<_>>()
    };
    let confirm_token = |message: &str| {
        let body = server::text_body(message);
        assert!(
            body.contains(&format!("{PUBLIC_URL}/confirm/")),
            "confirmation link: {body}"
        );
        server::token_after(&body, "/confirm/").expect("token in the link")
    };

    // A new address by form: pending, and a confirmation email.
    let r = form("new@example.com").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let new_page = r.text().await.unwrap();
    smtp.wait_until("confirmation for new@", |s| {
        s.copies().contains_key("new@example.com")
    })
    .await;
    assert_eq!(lp.status_of("new@example.com").await.unwrap(), "pending");
    let mail = confirmations("new@example.com");
    assert_eq!(mail.len(), 1);
    let token = confirm_token(&mail[0]);
    let confirm_url = served.url(&format!("/confirm/{token}"));

    // GET shows a page and changes nothing; POST activates.
    let r = http.get(&confirm_url).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let page = r.text().await.unwrap();
    assert!(
        page.contains(NEWSLETTER) && page.contains(r#"<form method="post""#),
        "{page}"
    );
    assert_eq!(lp.status_of("new@example.com").await.unwrap(), "pending");
    let r = http.post(&confirm_url).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(lp.status_of("new@example.com").await.unwrap(), "active");

    // The same by JSON.
    let r = json("json@example.com").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let new_json: serde_json::Value = r.json().await.unwrap();
    smtp.wait_until("confirmation for json@", |s| {
        s.copies().contains_key("json@example.com")
    })
    .await;
    assert_eq!(lp.status_of("json@example.com").await.unwrap(), "pending");

    // An active address: the same answer as a new one, and no email.
    let r = form("active@example.com").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        r.text().await.unwrap(),
        new_page,
        "same page as a new signup"
    );
    let r = json("active@example.com").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.json::<serde_json::Value>().await.unwrap(), new_json);

    // An unsubscribed address: the same answer, a confirmation, and it
    // stays unsubscribed until that is confirmed.
    let r = form("gone@example.com").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.text().await.unwrap(), new_page);
    smtp.wait_until("confirmation for gone@", |s| {
        s.copies().contains_key("gone@example.com")
    })
    .await;
    // Confirmations are sent in order, so by now any for active@ is in.
    assert!(
        confirmations("active@example.com").is_empty(),
        "an active address gets no new email"
    );
    assert_eq!(
        lp.status_of("gone@example.com").await.unwrap(),
        "unsubscribed"
    );
    let token = confirm_token(&confirmations("gone@example.com")[0]);
    let gone_url = served.url(&format!("/confirm/{token}"));
    assert_eq!(
        http.get(&gone_url).send().await.unwrap().status(),
        StatusCode::OK
    );
    assert_eq!(
        lp.status_of("gone@example.com").await.unwrap(),
        "unsubscribed"
    );
    assert_eq!(
        http.post(&gone_url).send().await.unwrap().status(),
        StatusCode::OK
    );
    assert_eq!(lp.status_of("gone@example.com").await.unwrap(), "active");

    // Invalid input.
    for bad in ["not-an-address", "a@b@example.com", ""] {
        let r = form(bad).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{bad:?}");
        let r = json(bad).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{bad:?}");
    }
    let r = http
        .post(served.url("/subscribe"))
        .header(CONTENT_TYPE, "application/json")
        .body("{")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    // A token that is not a confirmation token, or not ours.
    let active_id = lp.id_of("active@example.com").await;
    for bad in [
        lp.token(Purpose::Unsubscribe, active_id),
        "garbage".to_string(),
    ] {
        let u = served.url(&format!("/confirm/{bad}"));
        assert_eq!(
            http.post(&u).send().await.unwrap().status(),
            StatusCode::NOT_FOUND
        );
    }
    assert_eq!(
        lp.statuses().await.len(),
        4,
        "no subscriber was made from invalid input"
    );
    served.stop_ok().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signups_are_rate_limited_per_client() {
    let mut lp = Lp::new();
    lp.set("LETTERPRESS_SERVER__SIGNUP_PER_MINUTE", "3");
    let served = lp.serve().await;
    let http = client();
    let mut codes = Vec::new();
    for i in 0..5 {
        let r = http
            .post(served.url("/subscribe"))
            .form(&[("email", format!("reader{i}@example.com"))])
            .send()
            .await
            .unwrap();
        codes.push(r.status().as_u16());
    }
    assert_eq!(codes, [200, 200, 200, 429, 429]);
    assert_eq!(
        lp.statuses().await.len(),
        3,
        "the refused ones are not kept"
    );
    served.stop_ok().await;
}

/// The value of one sample line (`name{labels} value`) of a Prometheus text.
fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|l| {
        let (name, value) = l.rsplit_once(' ')?;
        (name == series).then(|| value.parse().ok())?
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_prometheus_metrics() {
    let smtp = SmtpServer::start().await;
    let lp = Lp::new().with_smtp(smtp.port);
    lp.add(&["a@example.com", "b@example.com"]).await;
    // Due already: the server's own worker sends it at start-up.
    lp.write_issue("issues", "metrics", "send_at = \"2020-01-01T00:00:00Z\"");
    let served = lp.serve().await;
    let http = client();
    for _ in 0..3 {
        let r = http.get(served.url("/healthz")).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.text().await.unwrap().trim(), "ok");
    }
    let r = http.get(served.url("/u/nonsense")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    smtp.wait_until("both copies", |s| s.received().len() == 2)
        .await;

    let metrics = eventually("the deliveries settled in /metrics", async || {
        let r = http.get(served.url("/metrics")).send().await.ok()?;
        let ctype = r.headers().get(CONTENT_TYPE)?.to_str().ok()?.to_string();
        assert!(ctype.starts_with("text/plain; version=0.0.4"), "{ctype}");
        let text = r.text().await.ok()?;
        (sample(&text, r#"letterpress_deliveries{status="sent"}"#) == Some(2.0)).then_some(text)
    })
    .await;
    assert_eq!(
        sample(
            &metrics,
            r#"letterpress_http_requests_total{route="/healthz",status="200"}"#
        ),
        Some(3.0),
        "{metrics}"
    );
    assert_eq!(
        sample(
            &metrics,
            r#"letterpress_http_requests_total{route="/u/{token}",status="404"}"#
        ),
        Some(1.0),
        "{metrics}"
    );
    assert_eq!(
        sample(&metrics, r#"letterpress_worker_attempts{outcome="sent"}"#),
        Some(2.0),
        "{metrics}"
    );
    assert_eq!(
        sample(&metrics, r#"letterpress_smtp_replies{class="2xx"}"#),
        Some(2.0),
        "{metrics}"
    );
    assert_eq!(
        sample(&metrics, r#"letterpress_subscribers{status="active"}"#),
        Some(2.0),
        "{metrics}"
    );
    // Every line is a comment or `series value`.
    for l in metrics.lines() {
        assert!(
            l.starts_with('#') || sample(l, l.rsplit_once(' ').unwrap().0).is_some(),
            "not Prometheus text: {l:?}"
        );
    }
    served.stop_ok().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_are_one_object_per_line_with_request_spans() {
    let mut lp = Lp::new();
    lp.set("LETTERPRESS_LOG_FORMAT", "json")
        .set("LETTERPRESS_LOG", "info");
    let served = lp.serve().await;
    let r = client().get(served.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    served
        .wait_for_line("the request's log line", |l| l.contains("/healthz"))
        .await;
    let (status, lines) = served.stop().await;
    assert!(status.success());
    let objects: Vec<serde_json::Value> = lines
        .iter()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l)
                .ok()
                .filter(serde_json::Value::is_object)
                .unwrap_or_else(|| panic!("not a JSON object: {l:?}"))
        })
        .collect();
    let request = objects
        .iter()
        .find(|o| o["span"]["name"] == "request" && o["span"]["route"] == "/healthz")
        .unwrap_or_else(|| panic!("no event in a request span: {lines:#?}"));
    assert_eq!(request["span"]["method"], "GET");
    assert_eq!(request["fields"]["status"], 200);
    assert_eq!(request["level"], "INFO");
    assert!(
        objects.iter().any(|o| o["fields"]["message"] == "stopped"),
        "{lines:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_requests_and_messages_in_flight() {
    let smtp = SmtpServer::start().await;
    // The SMTP server holds these recipients at RCPT until released: one
    // issue delivery (the worker's) and one signup confirmation (a request's).
    let (arrived_tx, mut arrived) = tokio::sync::mpsc::unbounded_channel::<String>();
    let release = std::sync::Arc::new((std::sync::Mutex::new(false), std::sync::Condvar::new()));
    {
        let release = std::sync::Arc::clone(&release);
        smtp.on_rcpt(move |rcpt| {
            if rcpt.starts_with("held") {
                let _ = arrived_tx.send(rcpt.to_string());
                let (lock, cv) = &*release;
                let mut go = lock.lock().unwrap();
                while !*go {
                    go = cv.wait(go).unwrap();
                }
            }
        });
    }
    let lp = Lp::new().with_smtp(smtp.port);
    lp.add(&["held-reader@example.com"]).await;
    lp.write_issue("issues", "in-flight", "send_at = \"2020-01-01T00:00:00Z\"");
    let served = lp.serve().await;
    let signup = {
        let url = served.url("/subscribe");
        tokio::spawn(async move {
            let r = client()
                .post(url)
                .form(&[("email", "held-signup@example.com")])
                .send()
                .await
                .expect("the request in flight is answered");
            (r.status(), r.text().await.unwrap_or_default())
        })
    };
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let rcpt = tokio::time::timeout(server::WAIT, arrived.recv())
            .await
            .expect("both messages reach RCPT")
            .unwrap();
        seen.push(rcpt);
    }

    served.terminate();
    served
        .wait_for_line("the stop notice", |l| l.starts_with("stopping"))
        .await;
    // New connections are refused once the listener is closed.
    let addr = served.addr;
    eventually("the listener to close", async || {
        tokio::net::TcpStream::connect(addr)
            .await
            .is_err()
            .then_some(())
    })
    .await;
    {
        let (lock, cv) = &*release;
        *lock.lock().unwrap() = true;
        cv.notify_all();
    }
    let (status, body) = signup.await.unwrap();
    assert_eq!(status, StatusCode::OK, "{body}");
    let mut served = served;
    let (status, lines) = served.wait().await;
    assert!(status.success(), "exit status {status}");
    assert_eq!(lines.last().map(String::as_str), Some("stopped"));
    let copies = smtp.copies();
    assert_eq!(copies.get("held-reader@example.com"), Some(&1));
    assert_eq!(copies.get("held-signup@example.com"), Some(&1));
    // The message in flight was recorded as sent, not left for a re-send.
    let issue = lp.issue_status("in-flight").await.expect("issue recorded");
    assert_eq!(issue["sent"], 1, "{issue}");
    assert_eq!(issue["queued"], 0, "{issue}");
    assert_eq!(
        lp.status_of("held-signup@example.com").await.unwrap(),
        "pending"
    );
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
    let mut lp = Lp::new().with_smtp(smtp.port);
    lp.set("LETTERPRESS_DELIVERY__CONCURRENCY", "1");
    lp.add(&["held@example.com", "other@example.com"]).await;
    let held_id = lp.id_of("held@example.com").await;
    lp.write_issue("issues", "gate", "send_at = \"2020-01-01T00:00:00Z\"");
    let served = lp.serve().await;
    tokio::time::timeout(server::WAIT, arrived.recv())
        .await
        .expect("held@'s transaction begins");
    let r = client()
        .post(served.url(&format!("/u/{}", lp.token(Purpose::Unsubscribe, held_id))))
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
