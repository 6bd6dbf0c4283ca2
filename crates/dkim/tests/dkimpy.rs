//! Signatures checked by an independent verifier: Python's dkimpy (with
//! PyNaCl for ed25519-sha256, through the test kit), fed the keys' DNS
//! records as the test generates them. Where dkimpy cannot be had the
//! tests print `skipped: …`, unless `LP_TEST_REQUIRE` asks for `dkim` (or
//! `all`).

use std::time::SystemTime;

use letterpress_dkim::{Ed25519Key, RsaKey, Signer};
use letterpress_testkit::{Dkimpy, Verdicts};

const DOMAIN: &str = "news.example.com";
const RSA_SELECTOR: &str = "lp2026";
const ED25519_SELECTOR: &str = "lp2026e";

/// letterpress's contract (GUIDE.md, "Email on the wire").
const HEADERS: &[&str] = &[
    "From",
    "To",
    "Subject",
    "Date",
    "Message-ID",
    "Reply-To",
    "List-Id",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
    "Feedback-ID",
    "MIME-Version",
    "Content-Type",
];

struct Keys {
    signer: Signer,
    /// `(name, TXT record)` for each selector.
    records: Vec<(String, String)>,
}

fn keys() -> Keys {
    let rsa = RsaKey::generate().expect("RSA key");
    let ed = Ed25519Key::generate().expect("Ed25519 key");
    // Through PEM and back, as letterpress loads them.
    let rsa = RsaKey::from_pem(&rsa.to_pkcs8_pem().expect("PEM")).expect("reload RSA");
    let ed = Ed25519Key::from_pem(&ed.to_pkcs8_pem().expect("PEM")).expect("reload Ed25519");
    let records = vec![
        (
            format!("{RSA_SELECTOR}._domainkey.{DOMAIN}"),
            rsa.dns_record().expect("RSA record"),
        ),
        (
            format!("{ED25519_SELECTOR}._domainkey.{DOMAIN}"),
            ed.dns_record(),
        ),
    ];
    let signer = Signer::new(DOMAIN, RSA_SELECTOR, rsa, HEADERS)
        .and_then(|s| s.co_sign(ED25519_SELECTOR, ed))
        .expect("signer");
    Keys { signer, records }
}

/// dkimpy's verdicts on each message; `None` when dkimpy cannot be had
/// (the kit has then said `skipped: …`, or failed the test under
/// `LP_TEST_REQUIRE=dkim`).
fn verify(records: &[(String, String)], messages: &[Vec<u8>]) -> Option<Vec<Verdicts>> {
    let dkimpy = Dkimpy::find_with_ed25519()?;
    let records: Vec<(&str, &str)> = records
        .iter()
        .map(|(name, record)| (name.as_str(), record.as_str()))
        .collect();
    Some(
        messages
            .iter()
            .map(|m| dkimpy.verify_each(m, &records))
            .collect(),
    )
}

/// Header fields as letterpress writes them, with folding.
fn headers(extra: &str) -> String {
    format!(
        "From: Rust Trends <news@{DOMAIN}>\r\n\
         To: =?utf-8?q?Ann_M=C3=BCller-L=C3=BCdenscheidt_von_und_zu_Hohenzollern?=\r\n \
         =?utf-8?q?-Sigmaringen?= <ann@x.example>\r\n\
         Subject: =?utf-8?q?Signed=2C_sealed=2C_delivered=3A_a_rather_long_subject_?=\r\n\
         \t=?utf-8?q?line_with_Gr=C3=BC=C3=9Fe_that_gets_folded?=\r\n\
         Date: Tue, 14 Nov 2023 22:13:20 +0000\r\n\
         Message-ID: <0c1f4f0e5a3b4c2d9e8f7a6b5c4d3e2f@{DOMAIN}>\r\n\
         List-Id: Rust Trends <{DOMAIN}>\r\n\
         List-Unsubscribe: <https://{DOMAIN}/u/AbCdEfGhIjKlMnOpQrStUvWxYz0123456789>,\r\n \
         <mailto:unsubscribe@{DOMAIN}?subject=unsubscribe>\r\n\
         List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n\
         Feedback-ID: signed:{DOMAIN}:newsletter:letterpress\r\n\
         Precedence: bulk\r\n\
         {extra}\
         MIME-Version: 1.0\r\n\
         Content-Type: multipart/alternative; boundary=\"=_abc123\"\r\n"
    )
}

/// A multipart body with what relaxed canonicalisation has to get right:
/// 8-bit UTF-8, runs of spaces and tabs, trailing WSP, long lines, empty
/// lines inside and at the end.
fn body() -> String {
    let long = "Rust ".repeat(180);
    format!(
        "--=_abc123\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\
         Content-Transfer-Encoding: 8bit\r\n\
         \r\n\
         Hallo Ann,  schöne Grüße aus Köln! \t\r\n\
         \r\n\
         \tIndented\twith  tabs   and spaces.  \r\n\
         {long}\r\n\
         Emoji: 🦀 — «ça marche»\r\n\
         \r\n\
         --=_abc123\r\n\
         Content-Type: text/html; charset=utf-8\r\n\
         Content-Transfer-Encoding: 8bit\r\n\
         \r\n\
         <html>\r\n    <body>\r\n        <p>Grüße</p>   \r\n    </body>\r\n</html>\r\n\
         --=_abc123--\r\n\
         \r\n\
         \r\n\
         \r\n"
    )
}

fn signed(signer: &Signer, message: &[u8]) -> Vec<u8> {
    let header = signer.sign(message, SystemTime::now()).expect("sign");
    let mut out = header.into_bytes();
    out.extend_from_slice(message);
    out
}

fn message(extra_headers: &str, body: &str) -> Vec<u8> {
    format!("{}\r\n{body}", headers(extra_headers)).into_bytes()
}

fn assert_both(v: &Verdicts, verified: bool, what: &str) {
    assert_eq!(
        v.signatures,
        [
            ("rsa-sha256".to_string(), verified),
            ("ed25519-sha256".to_string(), verified)
        ],
        "{what}: dkimpy's verdicts on rsa-sha256 (topmost) and ed25519-sha256\n{}",
        v.log
    );
}

#[test]
fn dkimpy_verifies_both_signatures() {
    let k = keys();
    let cases: [(&str, Vec<u8>); 5] = [
        ("multipart, folded headers, UTF-8", message("", &body())),
        (
            "with Reply-To",
            message("Reply-To: Editors <editors@x.example>\r\n", &body()),
        ),
        ("empty body", message("", "")),
        ("body of empty lines", message("", "\r\n\r\n \r\n")),
        ("last line without CRLF", message("", "no line end  here")),
    ];
    let messages: Vec<Vec<u8>> = cases.iter().map(|(_, m)| signed(&k.signer, m)).collect();
    let Some(verdicts) = verify(&k.records, &messages) else {
        return;
    };
    for ((what, _), v) in cases.iter().zip(&verdicts) {
        assert_both(v, true, what);
    }
    // h= has Reply-To only where the message has it.
    let with = String::from_utf8_lossy(&messages[1]).to_ascii_lowercase();
    let without = String::from_utf8_lossy(&messages[0]).to_ascii_lowercase();
    assert!(with.contains(":reply-to:"), "{with}");
    assert!(!without.contains("reply-to"), "{without}");
}

#[test]
fn dkimpy_fails_a_changed_message_and_passes_a_refolded_one() {
    let k = keys();
    let original = signed(&k.signer, &message("", &body()));
    let text = String::from_utf8(original.clone()).expect("UTF-8");

    // One body byte flipped: the body hash no longer matches.
    let mut body_flipped = original.clone();
    let at = text.find("Hallo Ann").expect("body text") + 1;
    body_flipped[at] ^= 0x01;
    // A signed header changed.
    let date_changed = text
        .replacen("Date: Tue, 14 Nov 2023", "Date: Wed, 15 Nov 2023", 1)
        .into_bytes();
    // What relaxed canonicalisation is for: a relay that refolds headers,
    // adds WSP and drops trailing empty lines changes no verdict.
    let refolded = text
        .replacen("List-Id: Rust Trends", "List-Id:   Rust\r\n\t  Trends", 1)
        .replacen("Subject: ", "Subject:\t", 1)
        .replacen("Hallo Ann,  schöne", "Hallo Ann,\t schöne", 1)
        .replacen("--=_abc123--\r\n\r\n\r\n\r\n", "--=_abc123--  \r\n", 1)
        .into_bytes();

    let Some(v) = verify(
        &k.records,
        &[original, body_flipped, date_changed, refolded],
    ) else {
        return;
    };
    assert_both(&v[0], true, "as signed");
    assert_both(&v[1], false, "a body byte flipped");
    assert_both(&v[2], false, "the Date changed");
    assert_both(&v[3], true, "refolded and re-spaced");
}
