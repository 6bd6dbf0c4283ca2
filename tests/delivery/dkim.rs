//! DKIM: the signature covers the contract's headers, sits above them, and
//! verifies with an independent verifier (Python's dkimpy); a changed
//! message fails.

use std::path::PathBuf;

use letterpress_testkit::Dkimpy;
use mail_parser::MessageParser;

use crate::helpers::*;

/// A DKIM key of letterpress's own making (`letterpress-dkim`'s keygen,
/// as `letterpress dkim keygen` will write it) in the installation's
/// folder, and the TXT record to publish for it.
struct DkimKey {
    path: PathBuf,
    record: String,
}

fn rsa_key(s: &Setup) -> DkimKey {
    let key = letterpress_dkim::RsaKey::generate().expect("RSA key");
    let path = s.lp.path("dkim.pem");
    std::fs::write(&path, key.to_pkcs8_pem().expect("PEM")).unwrap();
    DkimKey {
        path,
        record: key.dns_record().expect("DNS record"),
    }
}

fn ed25519_key(s: &Setup) -> DkimKey {
    let key = letterpress_dkim::Ed25519Key::generate().expect("Ed25519 key");
    let path = s.lp.path("dkim-ed25519.pem");
    std::fs::write(&path, key.to_pkcs8_pem().expect("PEM")).unwrap();
    DkimKey {
        path,
        record: key.dns_record(),
    }
}

/// Sends a signed issue with long, non-ASCII headers and trailing spaces
/// in the body to two subscribers; returns the messages as received.
async fn send_signed(s: &mut Setup, rsa: &DkimKey) -> Vec<String> {
    s.lp.set("LETTERPRESS_DKIM__DOMAIN", FROM_DOMAIN)
        .set("LETTERPRESS_DKIM__SELECTOR", "lp2026")
        .set("LETTERPRESS_DKIM__PRIVATE_KEY_PATH", arg(&rsa.path))
        .set(
            "LETTERPRESS_NEWSLETTER__UNSUBSCRIBE_MAILTO",
            "unsubscribe@example.test",
        );
    let (lp, smtp) = (&s.lp, &s.smtp);
    import(
        lp,
        &[
            (
                "ann@x.example",
                "Ann Müller-Lüdenscheidt von und zu Hohenzollern-Sigmaringen",
                "active",
            ),
            ("bob@x.example", "", "active"),
        ],
    )
    .await;
    let issue = lp.path("content/signed.md");
    std::fs::create_dir_all(lp.path("content")).unwrap();
    std::fs::write(
        &issue,
        "+++\ntitle = \"Signed, sealed, delivered: a rather long subject line with Grüße that gets folded\"\n\
         slug = \"signed\"\n+++\n\nHallo {{ subscriber_name(fallback=\"du\") }}.  Trailing spaces  \n\nDone.\n",
    )
    .unwrap();
    send(lp, &issue, &[]).await;
    let received = smtp.received();
    assert_eq!(received.len(), 2);
    received.into_iter().map(|r| r.data).collect()
}

/// The DKIM-Signature fields of `message`, topmost first, whitespace
/// removed.
fn dkim_signatures(message: &str) -> Vec<String> {
    let m = MessageParser::default().parse(message.as_bytes()).unwrap();
    m.headers_raw()
        .filter(|(k, _)| k.eq_ignore_ascii_case("DKIM-Signature"))
        .map(|(_, v)| v.chars().filter(|c| !c.is_whitespace()).collect())
        .collect()
}

fn dkim_tag(signature: &str, name: &str) -> Option<String> {
    signature
        .split(';')
        .find_map(|t| t.strip_prefix(&format!("{name}=")))
        .map(str::to_string)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dkim_signature_verifies_independently() {
    let mut s = Setup::sqlite().await;
    let rsa = rsa_key(&s);
    let received = send_signed(&mut s, &rsa).await;

    for message in &received {
        let sigs = dkim_signatures(message);
        assert_eq!(sigs.len(), 1, "one DKIM-Signature");
        let sig = &sigs[0];
        assert_eq!(dkim_tag(sig, "a").as_deref(), Some("rsa-sha256"));
        assert_eq!(dkim_tag(sig, "c").as_deref(), Some("relaxed/relaxed"));
        assert_eq!(dkim_tag(sig, "d").as_deref(), Some(FROM_DOMAIN));
        assert_eq!(dkim_tag(sig, "s").as_deref(), Some("lp2026"));
        let signed: Vec<String> = dkim_tag(sig, "h")
            .expect("h=")
            .split(':')
            .map(|h| h.to_ascii_lowercase())
            .collect();
        for h in [
            "from",
            "to",
            "subject",
            "date",
            "message-id",
            "list-id",
            "list-unsubscribe",
            "list-unsubscribe-post",
        ] {
            assert!(signed.iter().any(|s| s == h), "h= covers {h}: {signed:?}");
        }
        // Prepended, above the fields it signs (RFC 6376 §3.5), and folded.
        assert!(message.starts_with("DKIM-Signature: "), "{message}");
        let mut lines = message.split("\r\n").enumerate();
        for (_, line) in lines
            .by_ref()
            .take_while(|(i, l)| *i == 0 || l.starts_with(' '))
        {
            assert!(line.len() <= 78, "{line:?}");
        }
    }

    let Some(dkimpy) = Dkimpy::find() else {
        return;
    };
    for (i, message) in received.iter().enumerate() {
        let verified = dkimpy.verify(message.as_bytes(), &rsa.record);
        assert!(
            verified.is_ok(),
            "dkimpy verifies message {i}:\n{}\n--- message ---\n{message}",
            verified.unwrap_or_else(|log| log),
        );
        // One body byte changed: the signature fails.
        let tampered = message.replacen("Done.", "Dona.", 1);
        assert_ne!(&tampered, message);
        assert!(
            dkimpy.verify(tampered.as_bytes(), &rsa.record).is_err(),
            "dkimpy fails message {i} once changed"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_an_ed25519_key_two_signatures_rsa_first_both_verify() {
    let mut s = Setup::sqlite().await;
    let rsa = rsa_key(&s);
    let ed25519 = ed25519_key(&s);
    // dkim.ed25519_selector is left to its default, `<selector>-ed25519`.
    s.lp.set(
        "LETTERPRESS_DKIM__ED25519_PRIVATE_KEY_PATH",
        arg(&ed25519.path),
    );
    let received = send_signed(&mut s, &rsa).await;

    for message in &received {
        let sigs = dkim_signatures(message);
        assert_eq!(sigs.len(), 2, "two DKIM-Signatures:\n{message}");
        assert_eq!(dkim_tag(&sigs[0], "a").as_deref(), Some("rsa-sha256"));
        assert_eq!(dkim_tag(&sigs[0], "s").as_deref(), Some("lp2026"));
        assert_eq!(dkim_tag(&sigs[1], "a").as_deref(), Some("ed25519-sha256"));
        assert_eq!(dkim_tag(&sigs[1], "s").as_deref(), Some("lp2026-ed25519"));
        // One header list and one body hash, two keys.
        assert_eq!(dkim_tag(&sigs[0], "h"), dkim_tag(&sigs[1], "h"));
        assert_eq!(dkim_tag(&sigs[0], "bh"), dkim_tag(&sigs[1], "bh"));
    }

    let Some(dkimpy) = Dkimpy::find_with_ed25519() else {
        return;
    };
    let records = [
        (
            format!("lp2026._domainkey.{FROM_DOMAIN}"),
            rsa.record.as_str(),
        ),
        (
            format!("lp2026-ed25519._domainkey.{FROM_DOMAIN}"),
            ed25519.record.as_str(),
        ),
    ];
    let records: Vec<(&str, &str)> = records.iter().map(|(n, r)| (n.as_str(), *r)).collect();
    let both = |ok: bool| {
        vec![
            ("rsa-sha256".to_string(), ok),
            ("ed25519-sha256".to_string(), ok),
        ]
    };
    for (i, message) in received.iter().enumerate() {
        let v = dkimpy.verify_each(message.as_bytes(), &records);
        assert_eq!(
            v.signatures,
            both(true),
            "dkimpy verifies both signatures of message {i}, rsa-sha256 topmost:\n{}\n--- message ---\n{message}",
            v.log
        );
        let tampered = message.replacen("Done.", "Dona.", 1);
        let v = dkimpy.verify_each(tampered.as_bytes(), &records);
        assert_eq!(
            v.signatures,
            both(false),
            "dkimpy fails both once message {i} is changed:\n{}",
            v.log
        );
    }
}
