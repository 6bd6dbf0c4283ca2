//! Double opt-in signup by form and JSON, and its rate limit.

use letterpress_signing::Purpose;
use letterpress_testkit::{NEWSLETTER, PUBLIC_URL, SmtpServer, client, text_body, token_after};
use reqwest::StatusCode;
use reqwest::header::{CONTENT_TYPE, LOCATION};

use crate::lp;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn double_opt_in_signup() {
    let smtp = SmtpServer::start().await;
    let mut lp = lp().with_smtp(smtp.port);
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
        let body = text_body(message);
        assert!(
            body.contains(&format!("{PUBLIC_URL}/confirm/")),
            "confirmation link: {body}"
        );
        token_after(&body, "/confirm/").expect("token in the link")
    };

    // A new address by form: pending, and a confirmation email. The form
    // is sent on (303) to letterpress's own thank-you page.
    let r = form("new@example.com").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let new_page = r.headers()[LOCATION].to_str().unwrap().to_string();
    assert_eq!(new_page, format!("{PUBLIC_URL}/subscribe/thanks"));
    let thanks = http
        .get(served.url("/subscribe/thanks"))
        .send()
        .await
        .unwrap();
    assert_eq!(thanks.status(), StatusCode::OK);
    let thanks = thanks.text().await.unwrap();
    assert!(
        thanks.contains("Check your inbox") && thanks.contains(NEWSLETTER),
        "{thanks}"
    );
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
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        r.headers()[LOCATION],
        new_page.as_str(),
        "same answer as a new signup"
    );
    assert_eq!(r.text().await.unwrap(), "");
    let r = json("active@example.com").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.json::<serde_json::Value>().await.unwrap(), new_json);

    // An unsubscribed address: the same answer, a confirmation, and it
    // stays unsubscribed until that is confirmed.
    let r = form("gone@example.com").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()[LOCATION], new_page.as_str());
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
        lp.token(Purpose::Unsubscribe, active_id).await,
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
    let mut lp = lp();
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
    assert_eq!(codes, [303, 303, 303, 429, 429]);
    assert_eq!(
        lp.statuses().await.len(),
        3,
        "the refused ones are not kept"
    );
    served.stop_ok().await;
}

/// Confirmation messages the relay took for `to`.
fn mails_to(smtp: &SmtpServer, to: &str) -> Vec<String> {
    smtp.received()
        .into_iter()
        .filter(|r| r.rcpt_to.iter().any(|t| t == to))
        .map(|r| r.data)
        .collect()
}

/// A confirmation link confirms once: after an unsubscribe, the same link
/// does not bring the subscriber back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_confirmation_link_confirms_once() {
    let smtp = SmtpServer::start().await;
    let lp = lp().with_smtp(smtp.port);
    let served = lp.serve().await;
    let http = client();
    let r = http
        .post(served.url("/subscribe"))
        .form(&[("email", "once@example.com")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    smtp.wait_until("the confirmation", |s| {
        s.copies().contains_key("once@example.com")
    })
    .await;
    let token = token_after(
        &text_body(&mails_to(&smtp, "once@example.com")[0]),
        "/confirm/",
    )
    .expect("a confirmation link");
    let confirm = served.url(&format!("/confirm/{token}"));
    assert_eq!(
        http.post(&confirm).send().await.unwrap().status(),
        StatusCode::OK
    );
    assert_eq!(lp.status_of("once@example.com").await.unwrap(), "active");
    lp.ok(&["subscribers", "remove", "once@example.com"]).await;
    let again = http.post(&confirm).send().await.unwrap();
    assert_eq!(again.status(), StatusCode::GONE);
    assert!(again.text().await.unwrap().contains("sign up again"));
    assert_eq!(
        lp.status_of("once@example.com").await.unwrap(),
        "unsubscribed"
    );
    served.stop_ok().await;
}

/// Behind a reverse proxy every request comes from the proxy's address:
/// with `server.trusted_proxies` naming it, the per-visitor limit counts
/// the visitor its `X-Forwarded-For` names; from anyone else the header is
/// not believed. And however many visitors sign one address up, it gets
/// one confirmation (the per-address limit).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_count_visitors_behind_a_trusted_proxy_and_mails_per_address() {
    let smtp = SmtpServer::start().await;
    let mut lp = lp().with_smtp(smtp.port);
    lp.set("LETTERPRESS_SERVER__SIGNUP_PER_MINUTE", "2");
    lp.set(
        "LETTERPRESS_SERVER__TRUSTED_PROXIES",
        "[127.0.0.1, \"::1\"]",
    );
    let served = lp.serve().await;
    let http = client();
    let from = |visitor: &str, email: &str| {
        http.post(served.url("/subscribe"))
            .header("X-Forwarded-For", visitor)
            .form(&[("email", email)])
            .send()
    };
    // Two per minute for each visitor, not for all of them together.
    let mut codes = Vec::new();
    for (visitor, email) in [
        ("198.51.100.1", "a1@example.com"),
        ("198.51.100.1", "a2@example.com"),
        ("198.51.100.1", "a3@example.com"),
        ("198.51.100.2", "b1@example.com"),
        // One /64: one visitor.
        ("2001:db8:1:1::1", "c1@example.com"),
        ("2001:db8:1:1::2", "c2@example.com"),
        ("2001:db8:1:1::3", "c3@example.com"),
    ] {
        codes.push(from(visitor, email).await.unwrap().status().as_u16());
    }
    assert_eq!(codes, [303, 303, 429, 303, 303, 303, 429]);

    // Twenty visitors sign one address up: one confirmation mail.
    for i in 0..20 {
        let r = from(&format!("203.0.113.{i}"), "target@example.com")
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::SEE_OTHER, "visitor {i}");
    }
    // The mails are sent in order: once this one is in, the target's are too.
    let r = from("203.0.113.99", "marker@example.com").await.unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    smtp.wait_until("the marker's confirmation", |s| {
        s.copies().contains_key("marker@example.com")
    })
    .await;
    assert_eq!(mails_to(&smtp, "target@example.com").len(), 1);
    served.stop_ok().await;
}

/// Without `server.trusted_proxies`, `X-Forwarded-For` is anyone's to
/// write: a client cannot dodge its limit by claiming other addresses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forwarded_for_header_from_an_untrusted_client_is_ignored() {
    let mut lp = lp();
    lp.set("LETTERPRESS_SERVER__SIGNUP_PER_MINUTE", "2");
    let served = lp.serve().await;
    let mut codes = Vec::new();
    for i in 0..3 {
        let r = client()
            .post(served.url("/subscribe"))
            .header("X-Forwarded-For", format!("198.51.100.{i}"))
            .form(&[("email", format!("spoof{i}@example.com"))])
            .send()
            .await
            .unwrap();
        codes.push(r.status().as_u16());
    }
    assert_eq!(codes, [303, 303, 429]);
    served.stop_ok().await;
}

/// The answer to a signup never waits for the mail: with the relay stuck
/// on the confirmation's recipient, the visitor already has the page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signup_is_answered_before_its_confirmation_is_sent() {
    let smtp = SmtpServer::start().await;
    let (arrived_tx, mut arrived) = tokio::sync::mpsc::unbounded_channel::<()>();
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    let release_rx = std::sync::Mutex::new(release_rx);
    smtp.on_rcpt(move |rcpt| {
        if rcpt == "stuck@example.com" {
            let _ = arrived_tx.send(());
            let _ = release_rx.lock().unwrap().recv();
        }
    });
    let lp = lp().with_smtp(smtp.port);
    let served = lp.serve().await;
    let r = client()
        .post(served.url("/subscribe"))
        .form(&[("email", "stuck@example.com")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    // The relay holds the confirmation now, and the answer came anyway.
    tokio::time::timeout(letterpress_testkit::WAIT, arrived.recv())
        .await
        .expect("the confirmation reaches the relay");
    assert!(smtp.received().is_empty());
    release_tx.send(()).unwrap();
    smtp.wait_until("the confirmation", |s| {
        s.copies().contains_key("stuck@example.com")
    })
    .await;
    served.stop_ok().await;
}

/// The confirmation is made by the same message code as an issue: a
/// Message-ID at the From domain, one `text/plain; charset=utf-8` part,
/// and a DKIM signature an independent verifier accepts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_confirmation_mail_is_signed_and_identified_like_an_issue() {
    let smtp = SmtpServer::start().await;
    let mut lp = lp().with_smtp(smtp.port);
    let key = letterpress_dkim::RsaKey::generate().expect("an RSA key");
    let key_path = lp.path("dkim.pem");
    std::fs::write(&key_path, key.to_pkcs8_pem().expect("PEM")).unwrap();
    lp.set("LETTERPRESS_DKIM__DOMAIN", "example.test")
        .set("LETTERPRESS_DKIM__SELECTOR", "lp2026")
        .set(
            "LETTERPRESS_DKIM__PRIVATE_KEY_PATH",
            key_path.to_str().unwrap(),
        );
    let served = lp.serve().await;
    let r = client()
        .post(served.url("/subscribe"))
        .form(&[("email", "signed@example.com"), ("name", "Zoë")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    smtp.wait_until("the confirmation", |s| {
        s.copies().contains_key("signed@example.com")
    })
    .await;
    served.stop_ok().await;
    let mail = &mails_to(&smtp, "signed@example.com")[0];
    let field = |name| letterpress_testkit::header(mail, name).unwrap_or_default();
    assert!(
        field("Message-ID").ends_with("@example.test>"),
        "{}",
        field("Message-ID")
    );
    assert_eq!(
        field("Content-Type").to_ascii_lowercase(),
        "text/plain; charset=utf-8"
    );
    assert!(
        field("From").contains("news@example.test"),
        "{}",
        field("From")
    );
    assert!(text_body(mail).contains("/confirm/"));
    let Some(dkimpy) = letterpress_testkit::Dkimpy::find() else {
        return;
    };
    let record = key.dns_record().expect("DNS record");
    assert!(
        dkimpy.verify(mail.as_bytes(), &record).is_ok(),
        "dkimpy verifies the confirmation:\n{mail}"
    );
}
