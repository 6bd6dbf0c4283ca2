//! The operator's own relay over TLS: Debian's postfix on loopback (the
//! kit's `Postfix`), with a certificate from a CA the test makes, STARTTLS
//! required on one port and implicit TLS on another, relaying into the
//! kit's SMTP server. What arrived there is what was delivered; postfix's
//! log tells whether each connection was encrypted.

use letterpress_testkit::{Postfix, SmtpServer};

use crate::helpers::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postfix_with_a_private_ca_gets_every_message_over_tls() {
    let smtp = SmtpServer::start().await;
    let Some(postfix) = Postfix::start(smtp.port) else {
        return;
    };
    let mut lp = lp();
    lp.set("LETTERPRESS_DELIVERY__TRANSPORT", "smtp");
    lp.set(
        "LETTERPRESS_DELIVERY__TLS_CA_FILE",
        postfix.ca_file().to_str().unwrap(),
    );
    let emails = import_active(&lp, 6).await;
    let all: Vec<&str> = emails.iter().map(String::as_str).collect();

    // The three ways to say TLS: required, implicit, and nothing at all
    // (STARTTLS taken because it is offered; this port refuses MAIL in
    // plain text, so a plain-text send would fail here).
    let urls = [
        format!("smtp://127.0.0.1:{}?tls=required", postfix.starttls_port),
        format!("smtps://127.0.0.1:{}", postfix.smtps_port),
        format!("smtp://localhost:{}", postfix.starttls_port),
    ];
    for (n, url) in urls.iter().enumerate() {
        lp.set("LETTERPRESS_DELIVERY__SMTP_URL", url);
        let slug = format!("tls-{n}");
        let issue = lp.write_issue("content", &slug, "");
        let out = send(&lp, &issue, &[]).await;
        assert_eq!(
            counts(&lp, &slug).await,
            expect(0, 0, all.len() as u64, 0, 0),
            "{url}: every delivery sent:\n{out}\npostfix log:\n{}",
            postfix.log()
        );
        let want = (n + 1) * all.len();
        smtp.wait_until(&format!("{want} messages through postfix"), |s| {
            s.received().len() >= want
        })
        .await;
    }
    let per_address: std::collections::BTreeMap<String, usize> =
        all.iter().map(|e| (e.to_string(), urls.len())).collect();
    assert_eq!(copies(&smtp), per_address, "one copy of each issue each");
    for r in smtp.received() {
        assert!(
            parse_text(&r.data).contains("this is issue tls-"),
            "the message arrived whole through postfix"
        );
    }

    // Every connection letterpress made was encrypted. (The kit's own
    // probes for the listening ports send no command and are left out.)
    let sessions: Vec<_> = postfix
        .sessions()
        .into_iter()
        .filter(|s| !s.commands.starts_with("commands=0"))
        .collect();
    assert!(
        !sessions.is_empty(),
        "postfix logged no session:\n{}",
        postfix.log()
    );
    for s in &sessions {
        assert!(
            s.tls.is_some(),
            "a connection without TLS ({}):\n{}",
            s.commands,
            postfix.log()
        );
    }
    assert!(
        sessions.iter().any(|s| s.commands.contains("starttls=1")),
        "STARTTLS was used on the submission port:\n{}",
        postfix.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_certificate_is_named_once_with_its_fix() {
    let smtp = SmtpServer::start().await;
    let Some(postfix) = Postfix::start(smtp.port) else {
        return;
    };
    let mut lp = lp();
    lp.set("LETTERPRESS_DELIVERY__TRANSPORT", "smtp");
    lp.set(
        "LETTERPRESS_DELIVERY__SMTP_URL",
        &format!("smtp://127.0.0.1:{}?tls=required", postfix.starttls_port),
    );
    import_active(&lp, 2).await;
    let issue = lp.write_issue("content", "untrusted", "");
    let out = lp
        .run(&["send", arg(&issue), "--yes", "--to", "ann@x.example"])
        .await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("the certificate of 127.0.0.1 is not trusted (issued by an unknown CA)")
            && stderr.contains("set delivery.tls_ca_file"),
        "says what is wrong and how to fix it:\n{stderr}"
    );
    assert_eq!(
        stderr.matches("not trusted").count(),
        1,
        "said once:\n{stderr}"
    );
    assert!(
        !stderr.contains("Connection error"),
        "lettre's wrapping is not shown:\n{stderr}"
    );
    assert!(smtp.received().is_empty(), "nothing went out");

    // A send to the list: the deliveries wait, and the reason is given
    // once for all of them. One attempt each (the retry is an hour away,
    // and `--wait=0s` ends the send once its first attempts are made), so
    // what is said is what those attempts met, however slow the machine.
    lp.set("LETTERPRESS_DELIVERY__RETRY__INITIAL", "1h");
    let out = lp.run(&["send", arg(&issue), "--yes", "--wait=0s"]).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("2 deliveries are still deferred")
            && stderr.contains("2 waiting after: the certificate of 127.0.0.1 is not trusted"),
        "{stderr}"
    );
    assert_eq!(
        stderr.matches("not trusted").count(),
        1,
        "said once:\n{stderr}"
    );
    assert!(smtp.received().is_empty(), "nothing went out");
}

#[tokio::test]
async fn a_ca_file_without_a_certificate_is_refused_before_sending() {
    let smtp = SmtpServer::start().await;
    let mut lp = lp().with_smtp(smtp.port);
    std::fs::write(lp.path("ca.pem"), "not a certificate\n").unwrap();
    let ca = lp.path("ca.pem");
    lp.set("LETTERPRESS_DELIVERY__TLS_CA_FILE", ca.to_str().unwrap());
    import_active(&lp, 1).await;
    let issue = lp.write_issue("content", "bad-ca", "");
    let out = lp.run(&["send", arg(&issue), "--yes", WAIT_ARG]).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "delivery.tls_ca_file {}: no certificate in it",
            ca.display()
        )),
        "names the key, the file and what is wrong:\n{stderr}"
    );
    assert!(smtp.received().is_empty());
    assert!(
        lp.issue_status("bad-ca").await.is_none(),
        "nothing was queued"
    );
}

/// The "relay TLS" row of a `doctor` run's table.
fn tls_row(out: &std::process::Output) -> String {
    let table = String::from_utf8_lossy(&out.stdout);
    table
        .lines()
        .find(|l| l.contains("relay TLS"))
        .unwrap_or_else(|| {
            panic!(
                "no relay TLS row:\n{table}\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        })
        .to_string()
}

/// `doctor` against postfix: its TLS row passes with the CA (STARTTLS
/// and smtps alike) and fails without it, naming the setting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_checks_the_relay_certificate() {
    let smtp = SmtpServer::start().await;
    let Some(postfix) = Postfix::start(smtp.port) else {
        return;
    };
    let mut lp = lp();
    lp.set("LETTERPRESS_DELIVERY__TRANSPORT", "smtp");
    for (url, says) in [
        (
            format!("smtp://127.0.0.1:{}?tls=required", postfix.starttls_port),
            "STARTTLS, certificate verified",
        ),
        (
            format!("smtps://127.0.0.1:{}", postfix.smtps_port),
            "implicit TLS (smtps), certificate verified",
        ),
    ] {
        lp.set("LETTERPRESS_DELIVERY__SMTP_URL", &url);
        lp.set(
            "LETTERPRESS_DELIVERY__TLS_CA_FILE",
            postfix.ca_file().to_str().unwrap(),
        );
        let row = tls_row(&lp.run(&["doctor"]).await);
        assert!(
            row.starts_with("pass") && row.contains(says),
            "{url}: {row}"
        );

        lp.unset("LETTERPRESS_DELIVERY__TLS_CA_FILE");
        let row = tls_row(&lp.run(&["doctor"]).await);
        assert!(
            row.starts_with("FAIL") && row.contains("set delivery.tls_ca_file"),
            "{url} without the CA: {row}"
        );
    }
}

/// A relay on this machine with a certificate that does not verify (as
/// Debian's postfix comes, with its self-signed one) and a URL that says
/// nothing of TLS: the mail goes in plain text, which never leaves the
/// machine, and doctor says so. Asked for TLS explicitly, it does not go.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_relay_with_an_untrusted_certificate_gets_plain_text_unless_tls_is_asked_for() {
    let smtp = SmtpServer::start().await;
    let Some(postfix) = Postfix::start(smtp.port) else {
        return;
    };
    let mut lp = lp();
    lp.set("LETTERPRESS_DELIVERY__TRANSPORT", "smtp");
    lp.set(
        "LETTERPRESS_DELIVERY__SMTP_URL",
        &format!("smtp://127.0.0.1:{}", postfix.may_port),
    );
    let emails = import_active(&lp, 3).await;
    let issue = lp.write_issue("content", "local", "");
    let out = send(&lp, &issue, &[]).await;
    assert_eq!(
        counts(&lp, "local").await,
        expect(0, 0, 3, 0, 0),
        "{out}\n{}",
        postfix.log()
    );
    smtp.wait_until("3 messages through postfix", |s| s.received().len() >= 3)
        .await;
    let plain = postfix
        .sessions()
        .into_iter()
        .filter(|s| s.commands.contains("mail=1") && s.tls.is_none())
        .count();
    assert!(
        plain > 0,
        "the messages went in plain text:\n{}",
        postfix.log()
    );

    let row = tls_row(&lp.run(&["doctor"]).await);
    assert!(
        row.starts_with("WARN") && row.contains("not trusted") && row.contains("plain text"),
        "{row}"
    );

    // ?tls=opportunistic says TLS when offered: an untrusted certificate
    // then stops the mail, on this machine too.
    lp.set(
        "LETTERPRESS_DELIVERY__SMTP_URL",
        &format!("smtp://127.0.0.1:{}?tls=opportunistic", postfix.may_port),
    );
    let issue = lp.write_issue("content", "asked", "");
    // One attempt each, as above.
    lp.set("LETTERPRESS_DELIVERY__RETRY__INITIAL", "1h");
    let out = lp.run(&["send", arg(&issue), "--yes", "--wait=0s"]).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("3 waiting after: the certificate of 127.0.0.1 is not trusted"),
        "{stderr}"
    );

    // With the CA, the same URL that says nothing is encrypted.
    lp.set(
        "LETTERPRESS_DELIVERY__SMTP_URL",
        &format!("smtp://127.0.0.1:{}", postfix.may_port),
    );
    lp.set(
        "LETTERPRESS_DELIVERY__TLS_CA_FILE",
        postfix.ca_file().to_str().unwrap(),
    );
    let before = postfix
        .sessions()
        .iter()
        .filter(|s| s.tls.is_some())
        .count();
    let issue = lp.write_issue("content", "trusted", "");
    send(&lp, &issue, &[]).await;
    assert_eq!(counts(&lp, "trusted").await, expect(0, 0, 3, 0, 0));
    let per_address: std::collections::BTreeMap<String, usize> =
        emails.iter().map(|e| (e.clone(), 2)).collect();
    smtp.wait_until("6 messages through postfix", |s| s.received().len() >= 6)
        .await;
    assert_eq!(copies(&smtp), per_address);
    let encrypted = postfix
        .sessions()
        .iter()
        .filter(|s| s.tls.is_some() && s.commands.contains("mail=1"))
        .count();
    assert!(encrypted > before, "TLS with the CA:\n{}", postfix.log());
}
