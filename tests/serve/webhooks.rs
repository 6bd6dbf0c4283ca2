//! Signed webhooks: authentication, size and JSON checks, bounces and
//! unsubscribes that suppress addresses.

use std::collections::HashMap;

use letterpress_signing::sign_webhook;
use letterpress_testkit::{Served, SmtpServer, WEBHOOK_SECRET, client};
use reqwest::StatusCode;
use reqwest::header::CONTENT_TYPE;

use crate::lp;

/// POSTs `body` to a webhook with an optional timestamp and signature.
async fn webhook(
    served: &Served,
    path: &str,
    body: impl Into<Vec<u8>>,
    signed: Option<(i64, &str)>,
) -> (StatusCode, serde_json::Value) {
    let mut r = client()
        .post(served.url(path))
        .header(CONTENT_TYPE, "application/json")
        .body(body.into());
    if let Some((timestamp, signature)) = signed {
        r = r
            .header("X-Letterpress-Timestamp", timestamp.to_string())
            .header("X-Letterpress-Signature", signature);
    }
    let r = r.send().await.unwrap();
    let status = r.status();
    let json = r.json().await.unwrap_or(serde_json::Value::Null);
    (status, json)
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// A webhook call signed now.
async fn signed(served: &Served, path: &str, body: &str) -> (StatusCode, serde_json::Value) {
    let at = now();
    let sig = sign_webhook(WEBHOOK_SECRET.as_bytes(), at, body.as_bytes());
    webhook(served, path, body, Some((at, &sig))).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_are_authenticated_and_suppress_addresses() {
    let smtp = SmtpServer::start().await;
    let mut lp = lp().with_smtp(smtp.port);
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
        let wrong = sign_webhook(
            b"not-the-webhook-secret-0123456789abcdef",
            now(),
            body.as_bytes(),
        );
        let (s, _) = webhook(&served, path, body, Some((now(), &wrong))).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{path}: wrong key");
        let (s, _) = webhook(&served, path, body, Some((now(), "sha256=zz"))).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{path}: garbage signature");
        // A captured, validly signed call replayed with another address.
        let at = now();
        let sig = sign_webhook(WEBHOOK_SECRET.as_bytes(), at, body.as_bytes());
        let altered = body.replace("keep@", "hard@");
        let (s, _) = webhook(&served, path, altered, Some((at, &sig))).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{path}: altered body");
        // ... or with a later timestamp, to pass the freshness check.
        let (s, _) = webhook(&served, path, body, Some((at + 60, &sig))).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{path}: timestamp moved");
        // Signed, but more than five minutes ago (or ahead). The past one
        // a second over the limit (it only grows older on its way); the
        // future one well over, since it comes closer while it travels: at
        // +301 a request that crossed a second boundary arrived 300 s
        // ahead and was rightly accepted (seen on a loaded machine).
        for skewed in [now() - 301, now() + 330] {
            let sig = sign_webhook(WEBHOOK_SECRET.as_bytes(), skewed, body.as_bytes());
            let (s, _) = webhook(&served, path, body, Some((skewed, &sig))).await;
            assert_eq!(s, StatusCode::UNAUTHORIZED, "{path}: signed at {skewed}");
        }
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
    // Soft bounces suppress only at the limit (3 in a row): three reports,
    // each its own request (a reason apart), and each replay of one of them
    // changes nothing, however soon it comes.
    for n in 1..=3 {
        let body =
            format!(r#"{{"email": "soft@example.com", "type": "soft", "reason": "report {n}"}}"#);
        let at = now();
        let sig = sign_webhook(WEBHOOK_SECRET.as_bytes(), at, body.as_bytes());
        let (s, json) = webhook(&served, "/webhooks/bounce", body.clone(), Some((at, &sig))).await;
        if n == 1 {
            for _ in 0..3 {
                let (s, replayed) =
                    webhook(&served, "/webhooks/bounce", body.clone(), Some((at, &sig))).await;
                assert_eq!(s, StatusCode::OK, "a replay is answered like a retry");
                assert_eq!(
                    (replayed["changed"].as_u64(), &replayed["duplicate"]),
                    (Some(0), &serde_json::json!(true))
                );
            }
            assert_eq!(
                lp.status_of("soft@example.com").await.unwrap(),
                "active",
                "replays counted nothing"
            );
        }
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
