//! Every fixture in tests/fixtures/bounces read as a bounce mailbox reads
//! it: the report it is, what the policy makes of it, and the VERP
//! candidates it carries.

use letterpress_bounces::{Limits, NotABounce, Report, Verdict, parse};

const RCPT: &str = "reader@reader.example";
const MESSAGE_ID: &str = "<0f1e2d3c4b5a69788796a5b4c3d2e1f0@news.example>";
const RETURN_PATH: &str = "bounces+AbC123-_x@bounce.news.example";
const FROM: &str = "weekly@news.example";

fn fixture(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/../../tests/fixtures/bounces/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    text.replace("{{RCPT}}", RCPT)
        .replace("{{MESSAGE_ID}}", MESSAGE_ID)
        .replace("{{RETURN_PATH}}", RETURN_PATH)
        .replace("{{FROM}}", FROM)
        .replace("{{LIST_UNSUBSCRIBE}}", "<https://news.example/u/AbCdEf123>")
        .into_bytes()
}

/// (verdict, status) of each finding.
fn findings(name: &str) -> Vec<(Verdict, Option<String>)> {
    let parsed = parse(&fixture(name), &Limits::default());
    parsed
        .report
        .findings()
        .into_iter()
        .map(|f| (f.verdict, f.status))
        .collect()
}

#[test]
fn hard_bounces_as_each_mta_writes_them() {
    for (name, status) in [
        ("postfix-hard.eml", "5.1.1"),
        ("exim-hard.eml", "5.0.0"),
        ("exchange-hard.eml", "5.1.10"),
        ("gmail-hard.eml", "5.1.1"),
    ] {
        let parsed = parse(&fixture(name), &Limits::default());
        let Report::Dsn(dsn) = &parsed.report else {
            panic!("{name}: {:?}", parsed.report);
        };
        assert_eq!(dsn.recipients.len(), 1, "{name}");
        let found = parsed.report.findings();
        assert_eq!(found.len(), 1, "{name}");
        let f = &found[0];
        assert_eq!(f.verdict, Verdict::Hard, "{name}");
        assert_eq!(f.status.as_deref(), Some(status), "{name}");
        assert_eq!(f.recipient.as_deref(), Some(RCPT), "{name}");
        assert_eq!(f.message_id.as_deref(), Some(MESSAGE_ID), "{name}");
        assert_eq!(f.source, "dsn");
        assert!(
            f.reason.as_deref().is_some_and(|r| !r.is_empty()),
            "{name}: a reason"
        );
        assert_eq!(
            parsed.verp_candidates.first().map(String::as_str),
            Some(RETURN_PATH),
            "{name}"
        );
    }
}

#[test]
fn folded_diagnostics_are_unfolded_without_their_type() {
    let parsed = parse(&fixture("postfix-hard.eml"), &Limits::default());
    let Report::Dsn(dsn) = parsed.report else {
        panic!()
    };
    let rcpt = &dsn.recipients[0];
    assert_eq!(
        rcpt.diagnostic_code.as_deref(),
        Some(
            "550 5.1.1 <reader@reader.example>: Recipient address rejected: User unknown in virtual mailbox table"
        )
    );
    assert_eq!(rcpt.remote_mta.as_deref(), Some("mx.reader.example"));
    assert_eq!(dsn.reporting_mta.as_deref(), Some("mail.bounce.example"));
    let original = dsn.original.expect("the returned message");
    assert_eq!(
        original.list_unsubscribe,
        vec!["https://news.example/u/AbCdEf123".to_string()]
    );
    assert_eq!(original.return_path.as_deref(), Some(RETURN_PATH));
}

#[test]
fn soft_bounces_are_failures_with_a_4xx_status() {
    assert_eq!(
        findings("postfix-soft-expired.eml"),
        vec![(Verdict::Soft, Some("4.4.1".into()))]
    );
    assert_eq!(
        findings("gmail-soft-full.eml"),
        vec![(Verdict::Soft, Some("4.2.2".into()))]
    );
}

#[test]
fn a_delay_warning_is_a_dsn_with_nothing_to_record() {
    let parsed = parse(&fixture("postfix-delayed.eml"), &Limits::default());
    assert!(matches!(parsed.report, Report::Dsn(_)));
    assert_eq!(findings("postfix-delayed.eml"), vec![]);
}

#[test]
fn a_yahoo_feedback_report_is_a_complaint_found_by_message_id_and_verp() {
    let parsed = parse(&fixture("yahoo-arf.eml"), &Limits::default());
    let Report::Arf(arf) = &parsed.report else {
        panic!("{:?}", parsed.report);
    };
    assert_eq!(arf.user_agent.as_deref(), Some("Yahoo!-Mail-Feedback/2.0"));
    assert_eq!(arf.original_mail_from.as_deref(), Some(RETURN_PATH));
    let original = arf.original.as_ref().expect("the reported message");
    assert_eq!(
        original.list_unsubscribe,
        vec![
            "https://news.example/u/AbCdEf123".to_string(),
            "mailto:unsubscribe@news.example".to_string()
        ]
    );
    let found = parsed.report.findings();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].verdict, Verdict::Complaint);
    assert_eq!(found[0].source, "arf");
    assert_eq!(found[0].message_id.as_deref(), Some(MESSAGE_ID));
    assert!(parsed.verp_candidates.iter().any(|c| c == RETURN_PATH));
}

#[test]
fn a_not_spam_report_records_nothing() {
    let parsed = parse(&fixture("arf-not-spam.eml"), &Limits::default());
    let Report::Arf(arf) = &parsed.report else {
        panic!()
    };
    assert_eq!(arf.original_rcpt_to, vec![RCPT.to_string()]);
    assert_eq!(findings("arf-not-spam.eml"), vec![]);
}

#[test]
fn non_bounces_are_not_bounces() {
    let not = |name: &str| match parse(&fixture(name), &Limits::default()).report {
        Report::NotABounce(why) => why,
        other => panic!("{name}: {other:?}"),
    };
    assert_eq!(not("vacation.eml"), NotABounce::AutoReply);
    assert_eq!(not("out-of-office.eml"), NotABounce::AutoReply);
    assert_eq!(not("human-reply.eml"), NotABounce::NotAReport);
    assert_eq!(
        not("read-receipt.eml"),
        NotABounce::OtherReportType("disposition-notification".into())
    );
    for name in [
        "vacation.eml",
        "out-of-office.eml",
        "human-reply.eml",
        "read-receipt.eml",
        "dsn-relayed.eml",
    ] {
        assert_eq!(findings(name), vec![], "{name}");
    }
}

#[test]
fn a_dsn_for_someone_elses_mail_names_their_message() {
    // A DSN all the same: whether it is ours is the store's to say (no
    // delivery has that Message-ID, no subscriber that address).
    let found = parse(&fixture("dsn-not-ours.eml"), &Limits::default())
        .report
        .findings();
    assert_eq!(found.len(), 1);
    assert_eq!(
        found[0].recipient.as_deref(),
        Some("stranger@nowhere.example")
    );
    assert_eq!(
        found[0].message_id.as_deref(),
        Some("<5c1d2e3f.4a5b@spoofed.example>")
    );
}

#[test]
fn the_same_report_twice_is_the_same_event_and_others_differ() {
    let ids = |name: &str| -> Vec<String> {
        parse(&fixture(name), &Limits::default())
            .report
            .findings()
            .into_iter()
            .map(|f| f.event_id)
            .collect()
    };
    assert_eq!(ids("postfix-hard.eml"), ids("postfix-hard.eml"));
    // Same recipient, status and message written by another MTA: one event.
    assert_eq!(ids("postfix-hard.eml"), ids("gmail-hard.eml"));
    assert_ne!(ids("postfix-hard.eml"), ids("exim-hard.eml"));
    assert_ne!(ids("postfix-soft-expired.eml"), ids("gmail-soft-full.eml"));
}

#[test]
fn crlf_line_ends_read_the_same() {
    let lf = fixture("exchange-hard.eml");
    let crlf = String::from_utf8(lf.clone())
        .unwrap()
        .replace('\n', "\r\n")
        .into_bytes();
    let a = parse(&lf, &Limits::default()).report.findings();
    let b = parse(&crlf, &Limits::default()).report.findings();
    assert_eq!(a, b);
    assert_eq!(a.len(), 1);
}

#[test]
fn limits_stop_the_work() {
    let raw = fixture("postfix-hard.eml");
    let small = Limits {
        max_bytes: 100,
        ..Limits::default()
    };
    assert_eq!(
        parse(&raw, &small).report,
        Report::NotABounce(NotABounce::TooLarge(raw.len()))
    );
    let few = Limits {
        max_parts: 2,
        ..Limits::default()
    };
    assert_eq!(
        parse(&raw, &few).report,
        Report::NotABounce(NotABounce::TooManyParts)
    );
    // Many parts in a bomb: refused, not walked.
    let mut bomb = String::from("Content-Type: multipart/mixed; boundary=b\n\n");
    for _ in 0..5000 {
        bomb.push_str("--b\nContent-Type: text/plain\n\nx\n");
    }
    bomb.push_str("--b--\n");
    assert_eq!(
        parse(bomb.as_bytes(), &Limits::default()).report,
        Report::NotABounce(NotABounce::TooManyParts)
    );
    assert_eq!(
        parse(b"", &Limits::default()).report,
        Report::NotABounce(NotABounce::Unreadable)
    );
}

#[test]
fn a_stripped_feedback_report_keeps_its_unsubscribe_link() {
    let parsed = parse(&fixture("arf-stripped.eml"), &Limits::default());
    let Report::Arf(arf) = &parsed.report else {
        panic!("{:?}", parsed.report);
    };
    assert!(arf.original_rcpt_to.is_empty());
    let original = arf.original.as_ref().expect("the reported headers");
    assert_eq!(original.message_id, None);
    assert_eq!(
        original.list_unsubscribe,
        vec!["https://news.example/u/AbCdEf123".to_string()]
    );
    let found = parsed.report.findings();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].verdict, Verdict::Complaint);
    assert_eq!(found[0].message_id, None);
}

#[test]
fn a_dsn_that_returns_nothing_still_names_its_recipient() {
    let parsed = parse(&fixture("postfix-hard-bare.eml"), &Limits::default());
    let Report::Dsn(dsn) = &parsed.report else {
        panic!()
    };
    assert_eq!(dsn.original, None);
    let found = parsed.report.findings();
    assert_eq!(found.len(), 1);
    assert_eq!(
        (found[0].verdict, found[0].recipient.as_deref()),
        (Verdict::Hard, Some(RCPT))
    );
    assert_eq!(found[0].message_id, None);
}

#[test]
fn any_prefix_or_mangling_of_a_fixture_is_read_without_panicking() {
    let dir = format!(
        "{}/../../tests/fixtures/bounces",
        env!("CARGO_MANIFEST_DIR")
    );
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".eml"))
        .collect();
    names.sort();
    assert!(names.len() >= 17, "{names:?}");
    for name in names {
        let raw = fixture(&name);
        for cut in (0..raw.len()).step_by(13) {
            let _ = parse(&raw[..cut], &Limits::default()).report.findings();
        }
        // Every CR/LF, colon and semicolon turned into something else, one
        // kind at a time: the structure breaks, the parser must not.
        for (from, to) in [(b'\n', b' '), (b':', b';'), (b';', b':'), (b'-', b'\n')] {
            let mangled: Vec<u8> = raw
                .iter()
                .map(|&b| if b == from { to } else { b })
                .collect();
            let _ = parse(&mangled, &Limits::default()).report.findings();
        }
    }
}
