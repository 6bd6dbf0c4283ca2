//! The message on the wire: the contract's headers and MIME structure,
//! and no header injection through names or subjects.

use std::collections::HashMap;

use letterpress_testkit::PUBLIC_URL;
use mail_parser::{MessageParser, MimeHeaders};

use crate::helpers::*;

/// Everything after `PUBLIC_URL/u/` up to the end of the token.
fn unsubscribe_token(s: &str) -> Option<String> {
    letterpress_testkit::token_after(s, &format!("{PUBLIC_URL}/u/"))
}

/// An unfolded raw header value.
fn raw_header(m: &mail_parser::Message<'_>, name: &str) -> Option<String> {
    m.header_raw(name)
        .map(|v| v.replace("\r\n", "").replace('\n', "").trim().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_carry_the_contract_headers_and_mime_structure() {
    let mut s = Setup::sqlite().await;
    s.lp.set(
        "LETTERPRESS_NEWSLETTER__UNSUBSCRIBE_MAILTO",
        "unsubscribe@example.test",
    );
    s.lp.set("LETTERPRESS_NEWSLETTER__LIST_ID", "ferris.example.test");
    let (lp, smtp) = (&s.lp, &s.smtp);
    import(
        lp,
        &[
            ("ann@x.example", "Ann Müller", "active"),
            ("bob@x.example", "", "active"),
            ("eve@x.example", "Eve\r\nBcc: evil@x.example", "active"),
        ],
    )
    .await;
    let subject = "Grüße aus Köln 🦀";
    let issue = lp.path("content/umlaut.md");
    std::fs::create_dir_all(lp.path("content")).unwrap();
    std::fs::write(
        &issue,
        format!(
            "+++\ntitle = \"{subject}\"\nslug = \"umlaut\"\ndescription = \"Crabs on the Rhine\"\n+++\n\n\
             Hallo {{{{ subscriber_name(fallback=\"du\") }}}}, schöne Grüße.\n"
        ),
    )
    .unwrap();
    send(lp, &issue, &[]).await;
    let received = smtp.received();
    assert_eq!(received.len(), 3, "one message per subscriber");

    let mut feedback_ids = Vec::new();
    let mut tokens = HashMap::new();
    for r in &received {
        assert_eq!(r.rcpt_to.len(), 1, "one envelope recipient per message");
        let rcpt = &r.rcpt_to[0];
        let m = MessageParser::default()
            .parse(r.data.as_bytes())
            .expect("parsable");
        // multipart/alternative: text/plain, then text/html, both UTF-8.
        let root = m.root_part();
        let ct = root.content_type().expect("Content-Type");
        assert_eq!(
            (ct.ctype(), ct.subtype()),
            ("multipart", Some("alternative")),
            "{rcpt}"
        );
        let parts: Vec<_> = root
            .sub_parts()
            .expect("a multipart")
            .iter()
            .map(|&i| &m.parts[i as usize])
            .collect();
        let types: Vec<_> = parts
            .iter()
            .map(|p| {
                let ct = p.content_type().expect("part Content-Type");
                (
                    format!("{}/{}", ct.ctype(), ct.subtype().unwrap_or("")),
                    ct.attribute("charset").unwrap_or("").to_ascii_lowercase(),
                )
            })
            .collect();
        assert_eq!(
            types,
            [
                ("text/plain".to_string(), "utf-8".to_string()),
                ("text/html".to_string(), "utf-8".to_string())
            ],
            "{rcpt}"
        );
        let text = parts[0].text_contents().expect("text").to_string();
        let html = parts[1].text_contents().expect("html").to_string();
        assert!(text.contains("schöne Grüße"), "UTF-8 text decodes:\n{text}");

        // Identity headers.
        let from = m.from().and_then(|a| a.first()).expect("From");
        assert_eq!(from.address(), Some("news@example.test"));
        let to: Vec<_> = m.to().expect("To").iter().collect();
        assert_eq!(to.len(), 1, "{rcpt}: one To");
        assert_eq!(to[0].address(), Some(rcpt.as_str()));
        assert_eq!(m.subject(), Some(subject));
        let raw_subject = raw_header(&m, "Subject").expect("Subject");
        assert!(
            raw_subject.is_ascii() && raw_subject.to_ascii_lowercase().contains("=?utf-8?"),
            "a non-ASCII subject is RFC 2047 encoded: {raw_subject}"
        );
        assert!(m.date().is_some(), "Date");
        let message_id = m.message_id().expect("Message-ID");
        assert!(
            message_id.ends_with(&format!("@{FROM_DOMAIN}")) && message_id.len() > 20,
            "Message-ID <random@from-domain>: {message_id}"
        );
        assert!(
            raw_header(&m, "Message-ID").is_some_and(|v| v.starts_with('<') && v.ends_with('>')),
            "Message-ID in angle brackets"
        );

        // List headers.
        let list_id = raw_header(&m, "List-Id").expect("List-Id");
        assert!(list_id.ends_with("<ferris.example.test>"), "{list_id}");
        let unsub = raw_header(&m, "List-Unsubscribe").expect("List-Unsubscribe");
        let token = unsubscribe_token(&unsub).expect("a /u/TOKEN link");
        assert_eq!(
            unsub,
            format!(
                "<{PUBLIC_URL}/u/{token}>, <mailto:unsubscribe@example.test?subject=unsubscribe>"
            )
        );
        assert_eq!(
            raw_header(&m, "List-Unsubscribe-Post").as_deref(),
            Some("List-Unsubscribe=One-Click")
        );
        assert_eq!(raw_header(&m, "Precedence").as_deref(), Some("bulk"));
        feedback_ids.push(raw_header(&m, "Feedback-ID").expect("Feedback-ID"));

        // The recipient's own unsubscribe link, in both parts.
        let link = format!("{PUBLIC_URL}/u/{token}");
        assert!(text.contains(&link), "{rcpt}: text part has {link}");
        assert!(html.contains(&link), "{rcpt}: HTML part has {link}");
        tokens.insert(rcpt.clone(), token);

        // No header injection through the name.
        assert!(m.header("Bcc").is_none(), "{rcpt}: no Bcc header");
        assert!(m.bcc().is_none());
        assert!(
            !r.data.to_ascii_lowercase().contains("\nbcc:"),
            "{rcpt}: no Bcc line anywhere"
        );
        if rcpt == "eve@x.example" {
            let name = to[0].name().unwrap_or("");
            assert!(
                !name.contains('\r') && !name.contains('\n') && name.starts_with("Eve"),
                "the name stays one header value: {name:?}"
            );
        }
    }
    assert!(
        feedback_ids.iter().all(|f| f == &feedback_ids[0]),
        "Feedback-ID is per issue: {feedback_ids:?}"
    );
    let mut distinct: Vec<_> = tokens.values().collect();
    distinct.sort();
    distinct.dedup();
    assert_eq!(
        distinct.len(),
        3,
        "one unsubscribe link per recipient: {tokens:?}"
    );
    let all_rcpts: Vec<_> = received.iter().flat_map(|r| r.rcpt_to.clone()).collect();
    assert!(
        !all_rcpts.iter().any(|r| r.contains("evil")),
        "nobody else got a copy: {all_rcpts:?}"
    );

    // A subject with a line break cannot start a header either.
    let crlf = lp.path("content/crlf.md");
    std::fs::write(
        &crlf,
        "+++\ntitle = \"Hello\\r\\nBcc: evil@x.example\"\nslug = \"crlf\"\n+++\n\nHi.\n",
    )
    .unwrap();
    send(lp, &crlf, &[]).await;
    let received = smtp.received();
    assert_eq!(received.len(), 6);
    for r in &received[3..] {
        assert_eq!(r.rcpt_to.len(), 1);
        let m = MessageParser::default().parse(r.data.as_bytes()).unwrap();
        assert!(m.header("Bcc").is_none(), "no Bcc header from the subject");
        let subject = m.subject().unwrap_or("");
        assert!(
            subject.starts_with("Hello") && !subject.contains('\n'),
            "{subject:?}"
        );
    }
}

/// Issue #10, point 10: however long the stored name (one stored before
/// names were limited to 200 characters included), every line of the
/// message, the `To:` header's folded lines among them, stays within
/// RFC 5322's 998 characters, and the name still decodes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_name_keeps_every_line_within_998_characters() {
    // The file transport: the message as it would go on the wire.
    let lp = lp();
    let crabs = "🦀".repeat(200);
    let plain = "a".repeat(200);
    import(
        &lp,
        &[
            ("crab@x.example", &crabs, "active"),
            ("plain@x.example", &plain, "active"),
            ("old@x.example", "", "active"),
        ],
    )
    .await;
    // A name written before the 200-character limit: one long word, which
    // no header folding can break.
    letterpress_testkit::sql::execute(
        &format!("sqlite://{}", lp.path("lp.db").display()),
        &[&format!(
            "UPDATE subscribers SET name = '{}' WHERE email = 'old@x.example'",
            "b".repeat(5000)
        )],
    )
    .await;
    let issue = lp.write_issue("content", "long-names", "");
    send(&lp, &issue, &[]).await;
    let folder = lp.path("outbox/long-names");
    let mut seen = 0;
    for entry in std::fs::read_dir(&folder).unwrap() {
        let raw = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        for line in raw.split("\r\n") {
            assert!(
                line.len() <= 998,
                "a line of {} characters: {}…",
                line.len(),
                &line[..80]
            );
        }
        let m = MessageParser::default().parse(raw.as_bytes()).unwrap();
        let to = m.to().and_then(|a| a.first()).expect("To");
        let name = to.name().unwrap_or("");
        match to.address() {
            Some("crab@x.example") => assert_eq!(name, crabs),
            Some("plain@x.example") => assert_eq!(name, plain),
            Some("old@x.example") => assert_eq!(name, "b".repeat(200), "cut to 200"),
            other => panic!("unexpected recipient {other:?}"),
        }
        seen += 1;
    }
    assert_eq!(seen, 3);
}
