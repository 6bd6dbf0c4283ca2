//! DKIM: the signature covers the contract's headers and verifies with an
//! independent verifier (Python's dkimpy).

use letterpress_testkit::Dkimpy;
use mail_parser::MessageParser;

use crate::helpers::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dkim_signature_verifies_independently() {
    use rsa::pkcs1::EncodeRsaPrivateKey;
    use rsa::pkcs8::EncodePublicKey;

    let mut s = Setup::sqlite().await;
    // 1024 bits keeps key generation quick in a debug build; dkimpy accepts it.
    let key = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 1024).expect("RSA key");
    let pem = key
        .to_pkcs1_pem(rsa::pkcs1::LineEnding::LF)
        .expect("PKCS#1 PEM");
    let key_path = s.lp.path("dkim.pem");
    std::fs::write(&key_path, pem.as_bytes()).unwrap();
    let spki = key
        .to_public_key()
        .to_public_key_der()
        .expect("SubjectPublicKeyInfo");
    use base64::Engine;
    let record = format!(
        "v=DKIM1; k=rsa; p={}",
        base64::engine::general_purpose::STANDARD.encode(spki.as_bytes())
    );
    s.lp.set("LETTERPRESS_DKIM__DOMAIN", FROM_DOMAIN)
        .set("LETTERPRESS_DKIM__SELECTOR", "lp2026")
        .set("LETTERPRESS_DKIM__PRIVATE_KEY_PATH", arg(&key_path))
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

    for r in &received {
        let m = MessageParser::default().parse(r.data.as_bytes()).unwrap();
        let sigs: Vec<_> = m
            .headers_raw()
            .filter(|(k, _)| k.eq_ignore_ascii_case("DKIM-Signature"))
            .map(|(_, v)| v.to_string())
            .collect();
        assert_eq!(sigs.len(), 1, "one DKIM-Signature");
        let sig: String = sigs[0].chars().filter(|c| !c.is_whitespace()).collect();
        let tag = |name: &str| {
            sig.split(';')
                .find_map(|t| t.strip_prefix(&format!("{name}=")))
                .map(str::to_string)
        };
        assert_eq!(tag("d").as_deref(), Some(FROM_DOMAIN));
        assert_eq!(tag("s").as_deref(), Some("lp2026"));
        let signed: Vec<String> = tag("h")
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
    }

    let Some(dkimpy) = Dkimpy::find() else {
        return;
    };
    for r in &received {
        let verified = dkimpy.verify(r.data.as_bytes(), &record);
        assert!(
            verified.is_ok(),
            "dkimpy verifies the message to {:?}:\n{}\n--- message ---\n{}",
            r.rcpt_to,
            verified.unwrap_or_else(|log| log),
            r.data
        );
    }
}
