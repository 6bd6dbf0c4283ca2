//! The relays' own bounce webhooks, end to end: an issue is sent through the
//! kit's SMTP relay (which answers with the relay's queue ids), then each
//! provider's events are posted, signed with a key the test makes, the way
//! that provider signs them. A correctly signed event marks its delivery
//! (`status --json`: bounced after acceptance, complaints) and suppresses
//! the subscriber as the rules say; a replay, a stale timestamp, a wrong
//! key and a changed byte are each refused or recognised and change
//! nothing; a send started afterwards skips the suppressed subscribers.
//!
//! Every test has the same cast: ann gets a hard bounce, bob complains,
//! dan bounces softly once (below the limit of 3: still active), and cat is
//! the target of every tampered request, so cat must stay active.

use std::process::Stdio;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{KeyInit, Mac};
use letterpress_testkit::require::{self, Dependency};
use letterpress_testkit::{Behavior, Lp, Served, SmtpServer, client, sql};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::lp;

const ANN: &str = "ann@x.example";
const BOB: &str = "bob@x.example";
const CAT: &str = "cat@x.example";
const DAN: &str = "dan@x.example";
const METRICS_TOKEN: &str = "metrics-token-for-provider-tests-0123";

/// An installation whose issue `first` went out to the four, each message
/// accepted with the 250 `replies` give (by address), and `serve` running.
struct Sent {
    lp: Lp,
    smtp: SmtpServer,
    served: Served,
}

impl Sent {
    async fn new(env: &[(&str, String)], replies: &[(&str, String)]) -> Sent {
        Sent::on(None, env, replies).await
    }

    /// [`Sent::new`] on the database at `url` (SQLite when `None`).
    async fn on(url: Option<&str>, env: &[(&str, String)], replies: &[(&str, String)]) -> Sent {
        let smtp = SmtpServer::start().await;
        for (who, reply) in replies {
            smtp.rule(who, Behavior::DataReply(reply.clone()), None);
        }
        let mut lp = lp().with_smtp(smtp.port);
        if let Some(url) = url {
            lp = lp.with_database(url);
        }
        lp.set("LETTERPRESS_SERVER__SOFT_BOUNCE_LIMIT", "3");
        lp.set("LETTERPRESS_SERVER__METRICS_TOKEN", METRICS_TOKEN);
        for (k, v) in env {
            lp.set(k, v);
        }
        lp.add(&[ANN, BOB, CAT, DAN]).await;
        let issue = lp.write_issue("drafts", "first", "");
        lp.ok(&["send", issue.to_str().unwrap(), "--yes"]).await;
        assert_eq!(smtp.received().len(), 4, "the issue went out");
        let served = lp.serve().await;
        Sent { lp, smtp, served }
    }

    /// The Message-ID `to` was sent, as its header says.
    fn message_id(&self, to: &str) -> String {
        let r = self
            .smtp
            .received()
            .into_iter()
            .find(|r| r.rcpt_to.iter().any(|t| t == to))
            .unwrap_or_else(|| panic!("nothing sent to {to}"));
        letterpress_testkit::header(&r.data, "Message-ID")
            .unwrap_or_else(|| panic!("no Message-ID in {}", r.data))
    }

    async fn post(
        &self,
        path: &str,
        headers: &[(&str, String)],
        body: &[u8],
    ) -> (StatusCode, Value) {
        let mut r = client()
            .post(self.served.url(path))
            .header("content-type", "application/json")
            .body(body.to_vec());
        for (k, v) in headers {
            r = r.header(*k, v);
        }
        let r = r.send().await.unwrap();
        let status = r.status();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// Bounce events recorded, of any kind.
    async fn events(&self) -> Option<i64> {
        sql::query_i64(
            self.lp.database_url(),
            "SELECT COUNT(*) FROM bounce_events WHERE $1 = $1",
            0,
        )
        .await
    }

    /// `status --json` of `first`: (bounced after acceptance, complaints).
    async fn marked(&self) -> (u64, u64) {
        let s = self.lp.issue_status("first").await.expect("first was sent");
        (
            s["bounced_after_acceptance"].as_u64().unwrap(),
            s["complaints"].as_u64().unwrap(),
        )
    }

    /// Asserts that a refused request changed nothing.
    async fn refused(&self, what: &str, got: (StatusCode, Value), events: Option<i64>) {
        assert_eq!(got.0, StatusCode::UNAUTHORIZED, "{what}: {}", got.1);
        assert!(
            !got.1.to_string().contains("x.example"),
            "{what}: the answer names no address: {}",
            got.1
        );
        assert_eq!(self.events().await, events, "{what}: no event recorded");
        assert_eq!(
            self.lp.status_of(CAT).await.as_deref(),
            Some("active"),
            "{what}"
        );
    }

    /// The end state every provider's test reaches, and the next send.
    async fn ends_as_the_rules_say(self) {
        let statuses = self.lp.statuses().await;
        for (who, status) in [
            (ANN, "bounced"),
            (BOB, "complained"),
            (CAT, "active"),
            (DAN, "active"),
        ] {
            assert_eq!(statuses[who], status, "{who}");
        }
        // ann and dan bounced after acceptance, bob complained: in
        // `status --json` and as `status first` says it.
        assert_eq!(self.marked().await, (2, 1));
        let out = self.lp.run(&["status", "first"]).await;
        let said = String::from_utf8_lossy(&out.stderr);
        assert!(
            said.contains("first: 2 bounced after acceptance · 1 complaints"),
            "{said}"
        );
        // /metrics counts the events by kind (one each here).
        let metrics = client()
            .get(self.served.url("/metrics"))
            .bearer_auth(METRICS_TOKEN)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        for kind in ["hard", "soft", "complaint"] {
            let series = format!("letterpress_bounce_events{{kind=\"{kind}\"}} 1");
            assert!(
                metrics.lines().any(|l| l == series),
                "{series} in\n{metrics}"
            );
        }
        let before = self.smtp.received().len();
        let issue = self.lp.write_issue("drafts", "second", "");
        self.lp
            .ok(&["send", issue.to_str().unwrap(), "--yes"])
            .await;
        let mut to: Vec<String> = self.smtp.received()[before..]
            .iter()
            .flat_map(|r| r.rcpt_to.clone())
            .collect();
        to.sort();
        assert_eq!(
            to,
            [CAT, DAN],
            "a send after the events skips the suppressed"
        );
        self.served.stop_ok().await;
    }
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

// ---- Amazon SES through SNS ----

const TOPIC: &str = "arn:aws:sns:eu-west-1:123456789012:ses-notifications";
const CERT_URL: &str =
    "https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-0123456789abcdef.pem";

/// Runs `openssl ARGS` with `input` on stdin; its stdout.
fn openssl(args: &[&str], input: &[u8]) -> Vec<u8> {
    use std::io::Write as _;
    let mut child = std::process::Command::new("openssl")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("openssl runs");
    child.stdin.take().unwrap().write_all(input).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// An SNS message signed with `key` (a PEM file) the way SNS signs:
/// version 1 is RSA-SHA1, 2 RSA-SHA256, over `Name\nvalue\n` of the signed
/// fields in order.
fn sns(
    kind: &str,
    message: &str,
    id: &str,
    at: chrono::DateTime<chrono::Utc>,
    version: u8,
    key: &std::path::Path,
    extra: &[(&str, &str)],
) -> Value {
    let timestamp = at.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string();
    let mut fields: Vec<(&str, String)> =
        vec![("Message", message.into()), ("MessageId", id.into())];
    for (k, v) in extra {
        fields.push((k, v.to_string()));
    }
    fields.push(("Timestamp", timestamp.clone()));
    fields.push(("TopicArn", TOPIC.into()));
    fields.push(("Type", kind.into()));
    fields.sort_by(|a, b| a.0.cmp(b.0));
    let text: String = fields.iter().map(|(k, v)| format!("{k}\n{v}\n")).collect();
    let digest = if version == 1 { "-sha1" } else { "-sha256" };
    let sig = openssl(
        &["dgst", digest, "-sign", key.to_str().unwrap()],
        text.as_bytes(),
    );
    let mut v = json!({
        "Type": kind, "MessageId": id, "TopicArn": TOPIC, "Message": message,
        "Timestamp": timestamp, "SignatureVersion": version.to_string(),
        "Signature": STANDARD.encode(sig), "SigningCertURL": CERT_URL,
    });
    for (k, val) in extra {
        v[*k] = json!(val);
    }
    v
}

fn ses_bounce(kind: &str, relay: &str, to: &str, feedback: &str) -> String {
    let (field, recipients) = if kind == "Complaint" {
        ("complaint", "complainedRecipients")
    } else {
        ("bounce", "bouncedRecipients")
    };
    json!({
        "notificationType": if kind == "Complaint" { "Complaint" } else { "Bounce" },
        field: {
            "bounceType": kind, "feedbackId": feedback, "timestamp": "2026-12-01T10:00:00.000Z",
            recipients: [{"emailAddress": to, "status": "5.1.1", "diagnosticCode": "smtp; 550 5.1.1 user unknown"}]
        },
        "mail": {"messageId": relay, "source": "news@example.test", "destination": [to]}
    })
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ses_notifications_signed_by_sns() {
    if std::process::Command::new("openssl")
        .arg("version")
        .output()
        .is_err()
    {
        require::missing(Dependency::Openssl, "the openssl command is not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (key, cert, other) = (
        dir.path().join("key.pem"),
        dir.path().join("cert.pem"),
        dir.path().join("other.pem"),
    );
    let p = |p: &std::path::Path| p.to_str().unwrap().to_string();
    openssl(
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            &p(&key),
            "-out",
            &p(&cert),
            "-days",
            "2",
            "-subj",
            "/CN=sns.amazonaws.com",
        ],
        b"",
    );
    openssl(
        &[
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
            &p(&other),
        ],
        b"",
    );
    let relay = |who: &str| format!("0100019ad{who}0000-1a2b3c4d-5e6f-7a8b-9c0d-000000");
    let s = Sent::new(
        &[
            (
                "LETTERPRESS_WEBHOOKS__SES__TOPIC_ARNS",
                format!("[\"{TOPIC}\"]"),
            ),
            ("LETTERPRESS_WEBHOOKS__SES__CERTIFICATE_FILE", p(&cert)),
        ],
        &[ANN, BOB, CAT, DAN].map(|a| (a, format!("250 Ok {}", relay(&a[..3])))),
    )
    .await;
    let sr = &s;
    let post = |v: &Value| {
        let body = v.to_string();
        async move { sr.post("/webhooks/ses", &[], body.as_bytes()).await }
    };
    let t = chrono::Utc::now();

    // Version 1 (SHA1) for ann's hard bounce, 2 (SHA256) for the rest.
    let ann = sns(
        "Notification",
        &ses_bounce("Permanent", &relay("ann"), ANN, "fb-ann"),
        "sns-1",
        t,
        1,
        &key,
        &[],
    );
    let (st, body) = post(&ann).await;
    assert_eq!(
        (st, body["received"].as_u64()),
        (StatusCode::OK, Some(1)),
        "{body}"
    );
    assert_eq!(s.lp.status_of(ANN).await.as_deref(), Some("bounced"));
    assert_eq!(s.marked().await, (1, 0), "ann's delivery is marked");
    let events = s.events().await;
    let (st, body) = post(&ann).await;
    assert_eq!(
        (st, &body["duplicate"]),
        (StatusCode::OK, &json!(true)),
        "replay: {body}"
    );
    assert_eq!(s.events().await, events, "a replay records nothing");

    let bob = sns(
        "Notification",
        &ses_bounce("Complaint", &relay("bob"), BOB, "fb-bob"),
        "sns-2",
        t,
        2,
        &key,
        &[],
    );
    assert_eq!(post(&bob).await.0, StatusCode::OK);
    let dan = sns(
        "Notification",
        &ses_bounce("Transient", &relay("dan"), DAN, "fb-dan"),
        "sns-3",
        t,
        2,
        &key,
        &[],
    );
    assert_eq!(post(&dan).await.0, StatusCode::OK);
    let events = s.events().await;

    let cat = |at, key: &std::path::Path| {
        sns(
            "Notification",
            &ses_bounce("Permanent", &relay("cat"), CAT, "fb-cat"),
            "sns-4",
            at,
            2,
            key,
            &[],
        )
    };
    s.refused(
        "stale",
        post(&cat(t - chrono::TimeDelta::hours(2), &key)).await,
        events,
    )
    .await;
    s.refused("wrong key", post(&cat(t, &other)).await, events)
        .await;
    let mut changed = cat(t, &key);
    changed["Message"] = json!(
        changed["Message"]
            .as_str()
            .unwrap()
            .replace("550 5.1.1", "550 5.1.2")
    );
    s.refused("changed byte", post(&changed).await, events)
        .await;
    let mut topic = cat(t, &key);
    topic["TopicArn"] = json!("arn:aws:sns:eu-west-1:123456789012:someone-else");
    s.refused("other topic", post(&topic).await, events).await;
    let mut url = cat(t, &key);
    url["SigningCertURL"] = json!("https://sns.eu-west-1.amazonaws.com.evil.test/cert.pem");
    s.refused("certificate elsewhere", post(&url).await, events)
        .await;
    let mut v1 = cat(t, &key);
    v1["SignatureVersion"] = json!("1");
    s.refused(
        "SHA256 signature claimed as version 1",
        post(&v1).await,
        events,
    )
    .await;

    // A subscription is confirmed only when verified and on an SNS host:
    // neither a forged confirmation nor one pointing elsewhere is fetched.
    let trap = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    trap.set_nonblocking(true).unwrap();
    let elsewhere = format!("http://{}/confirm", trap.local_addr().unwrap());
    let extra = [("SubscribeURL", elsewhere.as_str()), ("Token", "tok-1")];
    let forged = sns(
        "SubscriptionConfirmation",
        "confirm",
        "sns-5",
        t,
        2,
        &other,
        &extra,
    );
    assert_eq!(post(&forged).await.0, StatusCode::UNAUTHORIZED);
    let signed = sns(
        "SubscriptionConfirmation",
        "confirm",
        "sns-6",
        t,
        2,
        &key,
        &extra,
    );
    assert_eq!(post(&signed).await.0, StatusCode::BAD_REQUEST);
    assert!(
        trap.accept().is_err(),
        "SubscribeURL off SNS was not fetched"
    );
    // An SES notification type we do not act on: acknowledged, ignored.
    let delivery =
        json!({"notificationType": "Delivery", "mail": {"messageId": relay("cat")}}).to_string();
    let ignored = sns("Notification", &delivery, "sns-7", t, 2, &key, &[]);
    assert_eq!(post(&ignored).await.0, StatusCode::OK);
    assert_eq!(s.events().await, events);
    s.ends_as_the_rules_say().await;
}

// ---- Postmark ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postmark_events_with_basic_credentials() {
    let relay = |who: &str| format!("pm-{who}-5a4b3c2d-0001");
    let s = Sent::new(
        &[
            (
                "LETTERPRESS_WEBHOOKS__POSTMARK__USERNAME",
                "postmark".into(),
            ),
            (
                "LETTERPRESS_WEBHOOKS__POSTMARK__PASSWORD",
                "pm-hook-password-1".into(),
            ),
        ],
        &[ANN, BOB, CAT, DAN].map(|a| (a, format!("250 2.0.0 Ok: queued as {}", relay(&a[..3])))),
    )
    .await;
    let basic = |c: &str| vec![("authorization", format!("Basic {}", STANDARD.encode(c)))];
    let good = basic("postmark:pm-hook-password-1");
    let bounce = |id: u64, kind: &str, who: &str, to: &str| {
        json!({"RecordType": "Bounce", "ID": id, "Type": kind, "TypeCode": 1, "MessageID": relay(who),
               "Email": to, "BouncedAt": "2026-12-01T10:00:00Z", "Details": "smtp;550 5.1.1 unknown"})
        .to_string()
    };
    let ann = bounce(1, "HardBounce", "ann", ANN);
    let (st, body) = s.post("/webhooks/postmark", &good, ann.as_bytes()).await;
    assert_eq!(
        (st, body["received"].as_u64()),
        (StatusCode::OK, Some(1)),
        "{body}"
    );
    assert_eq!(s.lp.status_of(ANN).await.as_deref(), Some("bounced"));
    let events = s.events().await;
    let (st, body) = s.post("/webhooks/postmark", &good, ann.as_bytes()).await;
    assert_eq!(
        (st, &body["duplicate"]),
        (StatusCode::OK, &json!(true)),
        "replay: {body}"
    );
    assert_eq!(s.events().await, events);
    let bob = json!({"RecordType": "SpamComplaint", "ID": 2, "Type": "SpamComplaint", "MessageID": relay("bob"),
                     "Email": BOB, "BouncedAt": "2026-12-01T10:00:00Z"}).to_string();
    assert_eq!(
        s.post("/webhooks/postmark", &good, bob.as_bytes()).await.0,
        StatusCode::OK
    );
    let dan = bounce(3, "SoftBounce", "dan", DAN);
    assert_eq!(
        s.post("/webhooks/postmark", &good, dan.as_bytes()).await.0,
        StatusCode::OK
    );
    let events = s.events().await;
    // Postmark signs nothing: its credentials are the whole check.
    let cat = bounce(4, "HardBounce", "cat", CAT);
    for (what, headers) in [
        ("no credentials", vec![]),
        ("wrong password", basic("postmark:pm-hook-password-2")),
        ("wrong user", basic("postmarl:pm-hook-password-1")),
        (
            "a changed byte in the credentials",
            basic("postmark:pm-hook-password-"),
        ),
    ] {
        s.refused(
            what,
            s.post("/webhooks/postmark", &headers, cat.as_bytes()).await,
            events,
        )
        .await;
    }
    // Bodies over the providers' limit (1 MiB), with good credentials: 413.
    let big = format!(
        r#"{{"RecordType":"Bounce","Pad":"{}"}}"#,
        "x".repeat(1024 * 1024)
    );
    let (st, _) = s.post("/webhooks/postmark", &good, big.as_bytes()).await;
    assert_eq!(st, StatusCode::PAYLOAD_TOO_LARGE);
    // A batch of SendGrid's size (768 KB) is not over it.
    let batch = format!(
        r#"{{"RecordType":"Open","Pad":"{}"}}"#,
        "x".repeat(768 * 1024)
    );
    let (st, _) = s.post("/webhooks/postmark", &good, batch.as_bytes()).await;
    assert_eq!(st, StatusCode::OK);
    let open =
        json!({"RecordType": "Open", "MessageID": relay("cat"), "Recipient": CAT}).to_string();
    assert_eq!(
        s.post("/webhooks/postmark", &good, open.as_bytes()).await.0,
        StatusCode::OK
    );
    assert_eq!(
        s.events().await,
        events,
        "an unknown record type is ignored"
    );
    s.ends_as_the_rules_say().await;
}

// ---- Mailgun ----

const MAILGUN_KEY: &str = "mailgun-signing-key-0123456789";

fn mailgun(key: &str, timestamp: i64, token: &str, event: Value) -> Vec<u8> {
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key.as_bytes()).unwrap();
    mac.update(timestamp.to_string().as_bytes());
    mac.update(token.as_bytes());
    let signature = hex::encode(mac.finalize().into_bytes());
    json!({"signature": {"timestamp": timestamp.to_string(), "token": token, "signature": signature},
           "event-data": event})
    .to_string()
    .into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mailgun_events_signed_with_the_webhook_key() {
    let s = Sent::new(
        &[(
            "LETTERPRESS_WEBHOOKS__MAILGUN__SIGNING_KEY",
            MAILGUN_KEY.into(),
        )],
        &[],
    )
    .await;
    let event = |id: &str, kind: &str, severity: &str, to: &str| {
        let mid = s.message_id(to);
        json!({"id": id, "event": kind, "severity": severity, "timestamp": now() as f64, "recipient": to,
               "message": {"headers": {"message-id": mid.trim_matches(['<', '>'])}},
               "delivery-status": {"code": 550, "description": "mailbox unavailable"}})
    };
    let ann = mailgun(
        MAILGUN_KEY,
        now(),
        "tok-ann-0001",
        event("ev-ann", "failed", "permanent", ANN),
    );
    let (st, body) = s.post("/webhooks/mailgun", &[], &ann).await;
    assert_eq!(
        (st, body["received"].as_u64()),
        (StatusCode::OK, Some(1)),
        "{body}"
    );
    assert_eq!(s.lp.status_of(ANN).await.as_deref(), Some("bounced"));
    let events = s.events().await;
    let (st, body) = s.post("/webhooks/mailgun", &[], &ann).await;
    assert_eq!(
        (st, &body["duplicate"]),
        (StatusCode::OK, &json!(true)),
        "replay: {body}"
    );
    assert_eq!(s.events().await, events);
    let bob = mailgun(
        MAILGUN_KEY,
        now(),
        "tok-bob-0002",
        event("ev-bob", "complained", "", BOB),
    );
    assert_eq!(
        s.post("/webhooks/mailgun", &[], &bob).await.0,
        StatusCode::OK
    );
    let dan = mailgun(
        MAILGUN_KEY,
        now(),
        "tok-dan-0003",
        event("ev-dan", "failed", "temporary", DAN),
    );
    assert_eq!(
        s.post("/webhooks/mailgun", &[], &dan).await.0,
        StatusCode::OK
    );
    let events = s.events().await;

    let cat = || event("ev-cat", "failed", "permanent", CAT);
    s.refused(
        "stale",
        s.post(
            "/webhooks/mailgun",
            &[],
            &mailgun(MAILGUN_KEY, now() - 301, "tok-cat-1", cat()),
        )
        .await,
        events,
    )
    .await;
    s.refused(
        "wrong key",
        s.post(
            "/webhooks/mailgun",
            &[],
            &mailgun("another-key", now(), "tok-cat-2", cat()),
        )
        .await,
        events,
    )
    .await;
    let signed = String::from_utf8(mailgun(MAILGUN_KEY, now(), "tok-cat-3", cat())).unwrap();
    // Mailgun signs the timestamp and the token: a byte changed in either.
    let changed = signed.replace("tok-cat-3", "tok-cat-4");
    s.refused(
        "changed token",
        s.post("/webhooks/mailgun", &[], changed.as_bytes()).await,
        events,
    )
    .await;
    let mut v: Value = serde_json::from_str(&signed).unwrap();
    let ts = v["signature"]["timestamp"]
        .as_str()
        .unwrap()
        .parse::<i64>()
        .unwrap();
    v["signature"]["timestamp"] = json!((ts - 1).to_string());
    s.refused(
        "changed timestamp",
        s.post("/webhooks/mailgun", &[], v.to_string().as_bytes())
            .await,
        events,
    )
    .await;
    // A token already used, with other event data: not acted on.
    let reused = mailgun(MAILGUN_KEY, now(), "tok-ann-0001", cat());
    let (st, body) = s.post("/webhooks/mailgun", &[], &reused).await;
    assert_eq!(
        (st, &body["duplicate"]),
        (StatusCode::OK, &json!(true)),
        "{body}"
    );
    assert_eq!(s.lp.status_of(CAT).await.as_deref(), Some("active"));
    assert_eq!(s.events().await, events);
    s.ends_as_the_rules_say().await;
}

// ---- SendGrid ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sendgrid_events_signed_with_ecdsa() {
    sendgrid(None).await;
}

/// The same on PostgreSQL (skipped, saying so, without it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sendgrid_events_signed_with_ecdsa_on_postgres() {
    let Some(pg) = letterpress_testkit::PgDb::create().await else {
        return;
    };
    sendgrid(Some(&pg.url)).await;
}

async fn sendgrid(url: Option<&str>) {
    use aws_lc_rs::encoding::{AsDer as _, PublicKeyX509Der};
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair as _};

    let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_ASN1_SIGNING).unwrap();
    let other = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_ASN1_SIGNING).unwrap();
    let spki: PublicKeyX509Der<'static> = pair.public_key().as_der().unwrap();
    let relay = |who: &str| format!("SG{who}0000QzXw7v");
    let s = Sent::on(
        url,
        &[(
            "LETTERPRESS_WEBHOOKS__SENDGRID__PUBLIC_KEY",
            STANDARD.encode(spki.as_ref()),
        )],
        &[ANN, BOB, CAT, DAN].map(|a| (a, format!("250 Ok: queued as {}", relay(&a[..3])))),
    )
    .await;
    let sign = |key: &EcdsaKeyPair, ts: i64, body: &[u8]| {
        let mut m = ts.to_string().into_bytes();
        m.extend_from_slice(body);
        vec![
            (
                "x-twilio-email-event-webhook-signature",
                STANDARD.encode(key.sign(&SystemRandom::new(), &m).unwrap().as_ref()),
            ),
            ("x-twilio-email-event-webhook-timestamp", ts.to_string()),
        ]
    };
    let event = |id: &str, kind: &str, typ: &str, who: &str, to: &str| {
        json!({"event": kind, "type": typ, "email": to, "sg_event_id": id, "timestamp": now(),
               "sg_message_id": format!("{}.filter0001.16648.5515E0B88.0", relay(who)),
               "status": "5.1.1", "reason": "550 5.1.1 unknown"})
    };
    let batch = json!([
        event("sg-ann", "bounce", "bounce", "ann", ANN),
        event("sg-bob", "spamreport", "", "bob", BOB),
        event("sg-dan", "bounce", "blocked", "dan", DAN),
        event("sg-open", "open", "", "cat", CAT),
    ])
    .to_string();
    let headers = sign(&pair, now(), batch.as_bytes());
    let (st, body) = s
        .post("/webhooks/sendgrid", &headers, batch.as_bytes())
        .await;
    assert_eq!(
        (st, body["received"].as_u64()),
        (StatusCode::OK, Some(3)),
        "{body}"
    );
    assert_eq!(s.lp.status_of(ANN).await.as_deref(), Some("bounced"));
    let events = s.events().await;
    let (st, body) = s
        .post("/webhooks/sendgrid", &headers, batch.as_bytes())
        .await;
    assert_eq!(
        (st, &body["duplicate"]),
        (StatusCode::OK, &json!(true)),
        "replay: {body}"
    );
    assert_eq!(s.events().await, events);

    let cat = json!([event("sg-cat", "bounce", "bounce", "cat", CAT)]).to_string();
    let sr = &s;
    let post = |h: Vec<(&'static str, String)>, b: String| async move {
        sr.post("/webhooks/sendgrid", &h, b.as_bytes()).await
    };
    s.refused(
        "stale",
        post(sign(&pair, now() - 301, cat.as_bytes()), cat.clone()).await,
        events,
    )
    .await;
    s.refused(
        "wrong key",
        post(sign(&other, now(), cat.as_bytes()), cat.clone()).await,
        events,
    )
    .await;
    s.refused(
        "changed byte",
        post(
            sign(&pair, now(), cat.as_bytes()),
            cat.replace("5.1.1\"", "5.1.2\""),
        )
        .await,
        events,
    )
    .await;
    let mut moved = sign(&pair, now(), cat.as_bytes());
    moved[1].1 = (now() - 1).to_string();
    s.refused("changed timestamp", post(moved, cat.clone()).await, events)
        .await;
    s.refused("unsigned", post(vec![], cat.clone()).await, events)
        .await;
    s.ends_as_the_rules_say().await;
}

// ---- Resend (Svix) ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resend_events_signed_the_svix_way() {
    let key = b"resend-test-signing-key-0123456789";
    let relay = |who: &str| format!("re_{who}_4f3e2d1c0001");
    let s = Sent::new(
        &[(
            "LETTERPRESS_WEBHOOKS__RESEND__SECRET",
            format!("whsec_{}", STANDARD.encode(key)),
        )],
        &[ANN, BOB, CAT, DAN].map(|a| (a, format!("250 OK {}", relay(&a[..3])))),
    )
    .await;
    let sign = |key: &[u8], id: &str, ts: i64, body: &[u8]| {
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key).unwrap();
        mac.update(format!("{id}.{ts}.").as_bytes());
        mac.update(body);
        vec![
            ("svix-id", id.to_string()),
            ("svix-timestamp", ts.to_string()),
            // A rotation in progress: the old secret's signature first.
            (
                "svix-signature",
                format!(
                    "v1,c29tZXRoaW5nIGVsc2U= v1,{}",
                    STANDARD.encode(mac.finalize().into_bytes())
                ),
            ),
        ]
    };
    let event = |kind: &str, bounce: &str, who: &str, to: &str| {
        let bounce = if bounce.is_empty() {
            Value::Null
        } else {
            json!({"type": bounce, "message": "550 unknown"})
        };
        json!({"type": kind, "created_at": "2026-12-01T10:00:00Z",
               "data": {"email_id": relay(who), "to": [to], "bounce": bounce}})
        .to_string()
    };
    let ann = event("email.bounced", "Permanent", "ann", ANN);
    let headers = sign(key, "msg_ann", now(), ann.as_bytes());
    let (st, body) = s.post("/webhooks/resend", &headers, ann.as_bytes()).await;
    assert_eq!(
        (st, body["received"].as_u64()),
        (StatusCode::OK, Some(1)),
        "{body}"
    );
    assert_eq!(s.lp.status_of(ANN).await.as_deref(), Some("bounced"));
    let events = s.events().await;
    let (st, body) = s.post("/webhooks/resend", &headers, ann.as_bytes()).await;
    assert_eq!(
        (st, &body["duplicate"]),
        (StatusCode::OK, &json!(true)),
        "replay: {body}"
    );
    assert_eq!(s.events().await, events);
    for (id, body) in [
        ("msg_bob", event("email.complained", "", "bob", BOB)),
        ("msg_dan", event("email.bounced", "Transient", "dan", DAN)),
        ("msg_open", event("email.opened", "", "cat", CAT)),
    ] {
        let h = sign(key, id, now(), body.as_bytes());
        assert_eq!(
            s.post("/webhooks/resend", &h, body.as_bytes()).await.0,
            StatusCode::OK,
            "{id}"
        );
    }
    let events = s.events().await;
    let cat = event("email.bounced", "Permanent", "cat", CAT);
    let sr = &s;
    let post = |h: Vec<(&'static str, String)>, b: String| async move {
        sr.post("/webhooks/resend", &h, b.as_bytes()).await
    };
    s.refused(
        "stale",
        post(
            sign(key, "msg_cat1", now() - 301, cat.as_bytes()),
            cat.clone(),
        )
        .await,
        events,
    )
    .await;
    s.refused(
        "wrong key",
        post(
            sign(b"another key", "msg_cat2", now(), cat.as_bytes()),
            cat.clone(),
        )
        .await,
        events,
    )
    .await;
    s.refused(
        "changed byte",
        post(
            sign(key, "msg_cat3", now(), cat.as_bytes()),
            cat.replace("550 unknown", "550 unknowm"),
        )
        .await,
        events,
    )
    .await;
    let mut other_id = sign(key, "msg_cat4", now(), cat.as_bytes());
    other_id[0].1 = "msg_cat5".into();
    s.refused("changed id", post(other_id, cat.clone()).await, events)
        .await;
    // A known id with another signed body: not acted on twice.
    let reused = sign(key, "msg_ann", now(), cat.as_bytes());
    let (st, body) = post(reused, cat.clone()).await;
    assert_eq!(
        (st, &body["duplicate"]),
        (StatusCode::OK, &json!(true)),
        "{body}"
    );
    assert_eq!(s.lp.status_of(CAT).await.as_deref(), Some("active"));
    s.ends_as_the_rules_say().await;
}
