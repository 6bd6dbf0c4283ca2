//! The bounce mailbox against a real IMAP server: Debian's Dovecot, started
//! by the kit on loopback with TLS from a CA the test makes. Messages are
//! the fixtures of tests/fixtures/bounces (DSNs and feedback reports as
//! Postfix, Exim, Exchange, Gmail and Yahoo write them, and non-bounces),
//! filled in with what letterpress really sent; `letterpress bounces` runs
//! as an operator runs it, and the test looks at the Maildir and at
//! `subscribers list` / `status` as the operator would.

use letterpress_testkit::{Dovecot, IMAP_PASSWORD, Lp, Stored};

use crate::helpers::lp;

/// What a fixture's placeholders become.
struct Fill<'a> {
    rcpt: &'a str,
    message_id: &'a str,
    return_path: &'a str,
}

fn fixture(name: &str, fill: &Fill<'_>) -> Vec<u8> {
    let path = letterpress_testkit::repo()
        .join("tests/fixtures/bounces")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.replace("{{RCPT}}", fill.rcpt)
        .replace("{{MESSAGE_ID}}", fill.message_id)
        .replace("{{RETURN_PATH}}", fill.return_path)
        .replace("{{FROM}}", "news@example.test")
        .into_bytes()
}

/// The installation pointed at the mailbox.
fn with_mailbox(lp: &mut Lp, dovecot: &Dovecot, url: &str) {
    lp.set("LETTERPRESS_BOUNCES__IMAP_URL", url);
    lp.set("LETTERPRESS_BOUNCES__IMAP_PASSWORD", IMAP_PASSWORD);
    lp.set(
        "LETTERPRESS_BOUNCES__TLS_CA_FILE",
        dovecot.ca_file().to_str().expect("UTF-8 temp path"),
    );
}

/// `letterpress bounces`, insisting on success; its summary line.
async fn run_bounces(lp: &Lp) -> String {
    let out = lp.run(&["bounces"]).await;
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "bounces failed: {stderr}");
    stderr
        .lines()
        .find(|l| l.contains("bounces:"))
        .unwrap_or_else(|| panic!("no summary line in {stderr}"))
        .to_string()
}

fn raws(messages: &[Stored]) -> Vec<Vec<u8>> {
    let mut r: Vec<Vec<u8>> = messages.iter().map(|m| m.raw.clone()).collect();
    r.sort();
    r
}

const NON_BOUNCES: [&str; 6] = [
    "vacation.eml",
    "out-of-office.eml",
    "human-reply.eml",
    "dsn-relayed.eml",
    "read-receipt.eml",
    "postfix-delayed.eml",
];

/// Non-bounces are never counted and never touched: they stay in INBOX,
/// unread, byte for byte; the next run does not read them again. Over
/// STARTTLS (imap://) with the test's private CA.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_bounces_are_left_alone_and_not_read_twice() {
    let Some(dovecot) = Dovecot::start() else {
        return;
    };
    let mut lp = lp();
    with_mailbox(&mut lp, &dovecot, &dovecot.starttls_url());
    let fill = Fill {
        rcpt: "reader@reader.example",
        message_id: "<not-sent-by-this-install@example.test>",
        return_path: "news@example.test",
    };
    for name in NON_BOUNCES {
        dovecot.deliver(&fixture(name, &fill));
    }
    let before = raws(&dovecot.messages("INBOX"));
    assert_eq!(before.len(), NON_BOUNCES.len());

    let first = run_bounces(&lp).await;
    assert!(first.contains("6 message(s) read"), "{first}");
    assert!(first.contains("0 hard, 0 soft, 0 complaint(s)"), "{first}");
    assert!(first.contains("0 processed, 6 ignored"), "{first}");

    let after = dovecot.messages("INBOX");
    assert_eq!(
        raws(&after),
        before,
        "the messages themselves are unchanged"
    );
    for m in &after {
        assert!(
            !m.flags.contains('S'),
            "not marked \\Seen: flags {:?}",
            m.flags
        );
        assert!(!m.flags.contains('T'), "not deleted: flags {:?}", m.flags);
    }
    assert!(
        dovecot.messages("Processed").is_empty(),
        "nothing processed"
    );

    let second = run_bounces(&lp).await;
    assert!(second.contains("0 message(s) read"), "{second}");
    assert_eq!(raws(&dovecot.messages("INBOX")), before);
    assert!(lp.subscribers().await.is_empty(), "no subscriber made up");
}

/// With `bounces.ignored_folder`, non-bounces move there instead (imaps://,
/// TLS from the first byte).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_bounces_move_to_the_ignored_folder_when_one_is_set() {
    let Some(dovecot) = Dovecot::start() else {
        return;
    };
    let mut lp = lp();
    with_mailbox(&mut lp, &dovecot, &dovecot.imaps_url());
    lp.set("LETTERPRESS_BOUNCES__IGNORED_FOLDER", "Not bounces");
    let fill = Fill {
        rcpt: "reader@reader.example",
        message_id: "<x@example.test>",
        return_path: "news@example.test",
    };
    for name in ["vacation.eml", "human-reply.eml"] {
        dovecot.deliver(&fixture(name, &fill));
    }
    let before = raws(&dovecot.messages("INBOX"));
    let summary = run_bounces(&lp).await;
    assert!(summary.contains("2 message(s) read"), "{summary}");
    assert!(dovecot.messages("INBOX").is_empty());
    let moved = dovecot.messages("Not bounces");
    assert_eq!(raws(&moved), before);
    assert!(moved.iter().all(|m| !m.flags.contains('S')), "still unread");
}

/// A server whose certificate the configured CA did not sign is refused
/// before the password is sent, with a non-zero exit naming TLS; the
/// mailbox is untouched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_certificate_is_refused() {
    let Some(dovecot) = Dovecot::start() else {
        return;
    };
    let mut lp = lp();
    lp.set("LETTERPRESS_BOUNCES__IMAP_URL", &dovecot.imaps_url());
    lp.set("LETTERPRESS_BOUNCES__IMAP_PASSWORD", IMAP_PASSWORD);
    dovecot.deliver(&fixture(
        "vacation.eml",
        &Fill {
            rcpt: "a@b.example",
            message_id: "<x@example.test>",
            return_path: "news@example.test",
        },
    ));
    // No tls_ca_file: the public roots, which do not know the test's CA.
    let out = lp.run(&["bounces"]).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("TLS"), "{stderr}");
    assert!(!stderr.contains(IMAP_PASSWORD), "{stderr}");
    assert_eq!(dovecot.messages("INBOX").len(), 1);
    assert!(
        dovecot.log().matches("Login: user=").count() == 0,
        "{}",
        dovecot.log()
    );

    // And a wrong password: refused, saying where the password comes from.
    with_mailbox(&mut lp, &dovecot, &dovecot.imaps_url());
    lp.set("LETTERPRESS_BOUNCES__IMAP_PASSWORD", "wrong");
    let out = lp.run(&["bounces"]).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("LETTERPRESS_BOUNCES__IMAP_PASSWORD"),
        "{stderr}"
    );
    assert_eq!(dovecot.messages("INBOX").len(), 1);
}
