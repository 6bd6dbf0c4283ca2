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
#[derive(Default)]
struct Fill<'a> {
    rcpt: &'a str,
    message_id: &'a str,
    return_path: &'a str,
    list_unsubscribe: &'a str,
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
        .replace("{{LIST_UNSUBSCRIBE}}", fill.list_unsubscribe)
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
        ..Fill::default()
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
        ..Fill::default()
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
            ..Fill::default()
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

/// How a report names its delivery.
#[derive(Clone, Copy, Debug)]
enum Via {
    /// Mailed back to the VERP return path (it also quotes the Message-ID).
    Verp,
    /// Only the VERP return path: the failing address is one the
    /// subscriber's mail was forwarded to.
    VerpOnly(&'static str),
    /// Mailed back to the plain From (a relay that rewrites the envelope
    /// sender): the returned Message-ID.
    MessageId,
    /// Neither: the List-Unsubscribe token of the reported headers.
    Token,
    /// Nothing returned: the recipient's address.
    Address,
}

/// The reports the mailbox gets: (subscriber, fixture, how it is found).
const REPORTS: [(&str, &str, Via); 10] = [
    ("hard-postfix@x.example", "postfix-hard.eml", Via::Verp),
    ("hard-exim@x.example", "exim-hard.eml", Via::Verp),
    (
        "hard-exchange@x.example",
        "exchange-hard.eml",
        Via::MessageId,
    ),
    ("hard-gmail@x.example", "gmail-hard.eml", Via::Verp),
    (
        "forwarded@x.example",
        "postfix-hard-bare.eml",
        Via::VerpOnly("old-job@elsewhere.example"),
    ),
    ("hard-bare@x.example", "postfix-hard-bare.eml", Via::Address),
    (
        "soft-postfix@x.example",
        "postfix-soft-expired.eml",
        Via::Verp,
    ),
    (
        "soft-gmail@x.example",
        "gmail-soft-full.eml",
        Via::MessageId,
    ),
    ("complainer@x.example", "yahoo-arf.eml", Via::Verp),
    (
        "complainer-stripped@x.example",
        "arf-stripped.eml",
        Via::Token,
    ),
];
/// `delivery.return_path` in the mailbox scenario.
const VERP: &str = "bounces+{token}@bounce.example.test";
/// The envelope sender as a relay that rewrites it leaves it.
const PLAIN_FROM: &str = "news@example.test";
/// Gets only non-bounces (replies, auto-replies, success and delay notices).
const FINE: &str = "fine@x.example";

/// `SELECT COUNT(*) …` with one id.
async fn count(lp: &Lp, query: &str, id: i64) -> i64 {
    letterpress_testkit::sql::query_i64(lp.database_url(), query, id)
        .await
        .unwrap_or(0)
}

/// The judged scenario: an issue sent through the kit's relay with a VERP
/// return path; a mailbox holding six hard bounces (Postfix, Exim,
/// Exchange, Gmail, and Postfix returning nothing, once to a forwarding
/// address), two soft ones, two complaints (Yahoo's, and one stripped of
/// everything but its List-Unsubscribe link), each found by a different
/// route (VERP, Message-ID, token, address), six non-bounces for those
/// very messages, a DSN for mail not ours, and a second copy of one
/// report; `letterpress bounces` twice. The hard
/// bounced and the complainer are suppressed, the soft bounced are not
/// (yet), each delivery carries its one event, the non-bounces are
/// untouched, nothing is counted twice, the reports are in the done
/// folder, and the next issue skips the suppressed.
async fn a_mailbox_of_reports_processed_twice(s: &mut crate::helpers::Setup) {
    let Some(dovecot) = Dovecot::start() else {
        return;
    };
    with_mailbox(&mut s.lp, &dovecot, &dovecot.starttls_url());
    s.lp.set("LETTERPRESS_DELIVERY__RETURN_PATH", VERP);
    let mut everyone: Vec<&str> = REPORTS.iter().map(|(a, _, _)| *a).collect();
    everyone.push(FINE);
    s.lp.add(&everyone).await;
    let issue = s.lp.write_issue("issues", "first", "");
    crate::helpers::send(&s.lp, &issue, &[]).await;

    // What letterpress really sent each subscriber.
    let sent = s.smtp.received();
    let fill_for = |rcpt: &str| -> (String, String, String) {
        let m = sent
            .iter()
            .find(|m| m.rcpt_to.iter().any(|r| r == rcpt))
            .unwrap_or_else(|| panic!("nothing sent to {rcpt}"));
        let mid = letterpress_testkit::header(&m.data, "Message-ID").expect("a Message-ID");
        let unsubscribe =
            letterpress_testkit::header(&m.data, "List-Unsubscribe").expect("List-Unsubscribe");
        (mid, m.mail_from.clone(), unsubscribe)
    };
    for (subscriber, name, via) in REPORTS {
        let (message_id, verp, list_unsubscribe) = fill_for(subscriber);
        assert!(verp.starts_with("bounces+"), "MAIL FROM {verp}");
        let (rcpt, return_path) = match via {
            Via::Verp => (subscriber, verp.as_str()),
            Via::VerpOnly(forwarded_to) => (forwarded_to, verp.as_str()),
            Via::MessageId | Via::Token | Via::Address => (subscriber, PLAIN_FROM),
        };
        let fill = Fill {
            rcpt,
            message_id: &message_id,
            return_path,
            list_unsubscribe: &list_unsubscribe,
        };
        dovecot.deliver(&fixture(name, &fill));
    }
    // The same report mailed twice (a retrying MTA): one event.
    let (message_id, return_path, _) = fill_for(REPORTS[0].0);
    let again = fixture(
        "postfix-hard.eml",
        &Fill {
            rcpt: REPORTS[0].0,
            message_id: &message_id,
            return_path: &return_path,
            ..Fill::default()
        },
    );
    dovecot.deliver(&again);
    let (message_id, return_path, list_unsubscribe) = fill_for(FINE);
    let fine = Fill {
        rcpt: FINE,
        message_id: &message_id,
        return_path: &return_path,
        list_unsubscribe: &list_unsubscribe,
    };
    for name in NON_BOUNCES {
        dovecot.deliver(&fixture(name, &fine));
    }
    // Someone else's bounce, sent to the mailbox's plain address.
    let not_ours = Fill {
        return_path: "bounces@bounce.example.test",
        ..Fill::default()
    };
    dovecot.deliver(&fixture("dsn-not-ours.eml", &not_ours));
    let non_bounces: Vec<Vec<u8>> = {
        let mut v: Vec<Vec<u8>> = NON_BOUNCES.iter().map(|n| fixture(n, &fine)).collect();
        v.push(fixture("dsn-not-ours.eml", &not_ours));
        v.sort();
        v
    };

    let first = run_bounces(&s.lp).await;
    assert!(first.contains("18 message(s) read"), "{first}");
    assert!(
        first.contains(
            "6 hard, 2 soft, 2 complaint(s) recorded (1 already known, 8 subscriber(s) suppressed)"
        ),
        "{first}"
    );
    assert!(
        first.contains("11 processed, 7 ignored (1 about mail not ours"),
        "{first}"
    );

    let statuses = s.lp.statuses().await;
    for (rcpt, name, _) in REPORTS {
        let want = match name {
            "yahoo-arf.eml" | "arf-stripped.eml" => "complained",
            n if n.contains("soft") => "active",
            _ => "bounced",
        };
        assert_eq!(
            statuses.get(rcpt).map(String::as_str),
            Some(want),
            "{rcpt} after {name}"
        );
    }
    assert_eq!(statuses.get(FINE).map(String::as_str), Some("active"));

    // `status` shows them for the issue: 6 hard + 2 soft, 2 complaints.
    let shown = s.lp.ok(&["status", "first"]).await;
    assert!(
        shown.contains("first: 8 bounced after acceptance · 2 complaints"),
        "{shown}"
    );
    let reported = |st: &serde_json::Value| {
        (
            st["bounced_after_acceptance"].as_u64(),
            st["complaints"].as_u64(),
        )
    };
    let st = s.lp.issue_status("first").await.expect("status of first");
    assert_eq!(reported(&st), (Some(8), Some(2)), "{st}");

    // Each reported delivery carries exactly its one event; the fine one none.
    let per_delivery = "SELECT COUNT(*) FROM bounce_events e JOIN deliveries d ON d.id = e.delivery_id \
                        WHERE d.subscriber_id = $1";
    for (rcpt, name, _) in REPORTS {
        let id = s.lp.id_of(rcpt).await;
        assert_eq!(count(&s.lp, per_delivery, id).await, 1, "{rcpt} ({name})");
    }
    assert_eq!(count(&s.lp, per_delivery, s.lp.id_of(FINE).await).await, 0);

    // Reports in the done folder; the non-bounces where they were, unread.
    let done = dovecot.messages("Processed");
    assert_eq!(done.len(), REPORTS.len() + 1, "every report and its copy");
    let inbox = dovecot.messages("INBOX");
    assert_eq!(raws(&inbox), non_bounces, "non-bounces untouched");
    assert!(
        inbox
            .iter()
            .all(|m| !m.flags.contains('S') && !m.flags.contains('T'))
    );

    // A second run reads nothing and changes nothing.
    let events = "SELECT COUNT(*) FROM bounce_events WHERE $1 = $1";
    let before = count(&s.lp, events, 0).await;
    let second = run_bounces(&s.lp).await;
    assert!(second.contains("0 message(s) read"), "{second}");
    assert_eq!(count(&s.lp, events, 0).await, before);
    assert_eq!(s.lp.statuses().await, statuses);
    assert_eq!(dovecot.messages("Processed").len(), REPORTS.len() + 1);

    // Even the same reports put back into the mailbox change nothing.
    for m in &done {
        dovecot.deliver(&m.raw);
    }
    let third = run_bounces(&s.lp).await;
    assert!(
        third.contains("0 hard, 0 soft, 0 complaint(s) recorded (11 already known"),
        "{third}"
    );
    assert_eq!(count(&s.lp, events, 0).await, before);
    assert_eq!(s.lp.statuses().await, statuses);
    let st = s.lp.issue_status("first").await.expect("status of first");
    assert_eq!(reported(&st), (Some(8), Some(2)), "counted once: {st}");

    // The next issue skips the suppressed.
    let copies_before = crate::helpers::copies(&s.smtp);
    let next = s.lp.write_issue("issues", "second", "");
    crate::helpers::send(&s.lp, &next, &[]).await;
    let copies = crate::helpers::copies(&s.smtp);
    for (rcpt, name, _) in REPORTS {
        let got =
            copies.get(rcpt).copied().unwrap_or(0) - copies_before.get(rcpt).copied().unwrap_or(0);
        let want = usize::from(name.contains("soft"));
        assert_eq!(got, want, "{rcpt} ({name}) in the second issue");
    }
}

crate::helpers::on_both_backends!(
    a_mailbox_of_reports_processed_twice_on_sqlite,
    a_mailbox_of_reports_processed_twice_on_postgres,
    a_mailbox_of_reports_processed_twice
);

/// `serve` reads the mailbox on its own every `bounces.interval`: a hard
/// bounce delivered while it runs suppresses the subscriber and lands in
/// the done folder, without any command run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_reads_the_mailbox_every_interval() {
    let Some(dovecot) = Dovecot::start() else {
        return;
    };
    let mut s = crate::helpers::Setup::sqlite().await;
    with_mailbox(&mut s.lp, &dovecot, &dovecot.imaps_url());
    s.lp.set("LETTERPRESS_BOUNCES__INTERVAL", "200ms");
    let rcpt = "gone@x.example";
    s.lp.add(&[rcpt, FINE]).await;
    let issue = s.lp.write_issue("issues", "first", "");
    crate::helpers::send(&s.lp, &issue, &[]).await;
    let sent = s.smtp.received();
    let m = sent
        .iter()
        .find(|m| m.rcpt_to.iter().any(|r| r == rcpt))
        .expect("sent");
    let message_id = letterpress_testkit::header(&m.data, "Message-ID").expect("a Message-ID");

    let served = s.lp.serve().await;
    // Delivered after serve started: only a later pass can see it.
    let fill = Fill {
        rcpt,
        message_id: &message_id,
        return_path: &m.mail_from,
        ..Fill::default()
    };
    dovecot.deliver(&fixture("gmail-hard.eml", &fill));
    letterpress_testkit::eventually("the bounce to reach the done folder", async || {
        (dovecot.messages("Processed").len() == 1).then_some(())
    })
    .await;
    served.stop_ok().await;
    let statuses = s.lp.statuses().await;
    assert_eq!(statuses.get(rcpt).map(String::as_str), Some("bounced"));
    assert_eq!(statuses.get(FINE).map(String::as_str), Some("active"));
    assert!(dovecot.messages("INBOX").is_empty());
}

/// `bounces.max_messages` bounds one run; the rest wait, and the summary
/// says how many.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_reads_at_most_max_messages() {
    let Some(dovecot) = Dovecot::start() else {
        return;
    };
    let mut lp = lp();
    with_mailbox(&mut lp, &dovecot, &dovecot.imaps_url());
    lp.set("LETTERPRESS_BOUNCES__MAX_MESSAGES", "2");
    let fill = Fill {
        rcpt: "reader@reader.example",
        message_id: "<x@example.test>",
        return_path: PLAIN_FROM,
        ..Fill::default()
    };
    for name in &NON_BOUNCES[..3] {
        dovecot.deliver(&fixture(name, &fill));
    }
    let first = run_bounces(&lp).await;
    assert!(first.contains("2 message(s) read"), "{first}");
    assert!(first.contains("1 left for the next run"), "{first}");
    let second = run_bounces(&lp).await;
    assert!(second.contains("1 message(s) read"), "{second}");
    assert!(second.contains("0 left for the next run"), "{second}");
}
