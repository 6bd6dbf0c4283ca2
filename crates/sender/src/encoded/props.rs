//! Properties of the quoted-printable encoder over arbitrary text, checked
//! by the test kit's decoder, written independently of it: whatever the text and
//! wherever the per-recipient slots cut it, the encoded body decodes to
//! the text, and no encoded line is longer than RFC 2045 allows or ends in
//! white space (which decoders strip).

use letterpress_composer::{Personalizable, Recipient, SendableIssue};
use proptest::prelude::*;

use super::{EncodedBody, encode};

/// The kit's strict RFC 2045 decoder (it refuses lines over 76
/// characters, white space at a line's end, a bare CR or LF, a bad `=`),
/// and, beyond it, any byte that is neither printable ASCII nor a tab
/// outside the line breaks. Hard line breaks decode to LF.
fn decode_strict(encoded: &[u8]) -> Result<Vec<u8>, String> {
    if let Some(b) = encoded
        .iter()
        .find(|b| !matches!(b, b'\t' | b'\r' | b'\n' | b' '..=b'~'))
    {
        return Err(format!("byte {b:#04x} written as is"));
    }
    letterpress_testkit::quoted_printable::decode(encoded).map_err(|e| e.to_string())
}

/// What the encoder promises to keep of `text`: everything, with a CRLF
/// read as one line break (LF).
fn line_breaks_as_lf(text: &str) -> String {
    text.replace("\r\n", "\n")
}

/// Text rich in what quoted-printable is delicate about: CR, LF and CRLF,
/// spaces and tabs (also before line breaks and at the end), `=`, dots,
/// non-ASCII characters of every width, and any character at all.
fn text() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        4 => proptest::sample::select(vec![
            " ", "\t", "\r", "\n", "\r\n", " \r\n", "\t\n", "=", ".", "a", "Z", "0", "~",
            "é", "€", "😀", "\u{0}", "\u{7f}", "<p>",
        ])
        .prop_map(str::to_string),
        2 => "[a-z]{1,90}".prop_map(|s: String| s),
        1 => any::<char>().prop_map(|c| c.to_string()),
    ];
    proptest::collection::vec(piece, 0..60).prop_map(|pieces| pieces.concat())
}

/// `text` cut into pieces at up to 8 char boundaries chosen by `cuts`.
fn cut(text: &str, cuts: &[usize]) -> Vec<String> {
    let boundaries: Vec<usize> = (0..=text.len())
        .filter(|i| text.is_char_boundary(*i))
        .collect();
    let mut at: Vec<usize> = cuts
        .iter()
        .map(|c| boundaries[c % boundaries.len()])
        .collect();
    at.sort_unstable();
    at.dedup();
    let mut pieces = Vec::new();
    let mut from = 0;
    for a in at {
        pieces.push(text[from..a].to_string());
        from = a;
    }
    pieces.push(text[from..].to_string());
    pieces
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 512,
        // A failure is printed with its shrunk input; no files are left
        // in the source tree.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    /// The pieces are encoded one after the other, each starting on a
    /// fresh line and only the last one `last`, as `EncodedBody` encodes
    /// the literal text between slots and each slot's value.
    #[test]
    fn pieces_encode_to_lines_that_decode_to_the_text(
        text in text(),
        cuts in proptest::collection::vec(any::<usize>(), 0..8),
    ) {
        let pieces = cut(&text, &cuts);
        let mut encoded = Vec::new();
        for (i, piece) in pieces.iter().enumerate() {
            encode(piece.as_bytes(), i + 1 == pieces.len(), &mut encoded);
        }
        let decoded = decode_strict(&encoded).map_err(TestCaseError::fail)?;
        // Each piece keeps its own line breaks: a CR ending one piece and
        // an LF starting the next are two characters, not a CRLF.
        let expected: String = pieces.iter().map(|p| line_breaks_as_lf(p)).collect();
        prop_assert_eq!(String::from_utf8_lossy(&decoded), expected);
    }

    /// The same through `EncodedBody`: literal text and slots in any
    /// order, per-recipient values with what HTML and text escape.
    #[test]
    fn an_encoded_body_decodes_to_the_rendered_body(
        literals in proptest::collection::vec(text(), 1..6),
        slots in proptest::collection::vec(0..4usize, 0..5),
        name in proptest::option::of("[a-zA-Zäöü&<>\"' ]{0,30}"),
        email in "[a-z0-9.+]{1,20}@[a-zé]{1,12}\\.example",
    ) {
        let markers = ["%%lp-unsubscribe-url%%", "%%lp-email%%", "%%lp-name%%", "%%lp-name:Leserin%%"];
        let mut source = String::from("Grüße ");
        for (i, literal) in literals.iter().enumerate() {
            // `%` could make a marker; it has no bearing on the encoding.
            source.push_str(&literal.replace('%', "#"));
            if let Some(slot) = slots.get(i) {
                source.push_str(markers[*slot]);
            }
        }
        let stored = serde_json::json!({
            "version": 1, "slug": "s", "title": "t", "subject": "t", "preheader": "",
            "issue_url": "https://example.com/s/", "content_hash": "h",
            "html": source, "text": source,
        });
        let issue = SendableIssue::from_stored(&stored.to_string()).expect("a stored issue");
        let unsubscribe_url = format!("https://example.com/u/{}", "t".repeat(100));
        let r = Recipient { email: &email, name: name.as_deref(), unsubscribe_url: &unsubscribe_url };
        for body in [&issue.html, &issue.text] {
            check_body(body, &r)?;
        }
    }
}

fn check_body(body: &Personalizable, r: &Recipient<'_>) -> Result<(), TestCaseError> {
    // Bodies lettre would not encode quoted-printable keep its path.
    let Some(prepared) = EncodedBody::prepare(body) else {
        return Ok(());
    };
    let encoded = prepared.render(body, r);
    let decoded = decode_strict(&encoded).map_err(TestCaseError::fail)?;
    prop_assert_eq!(
        String::from_utf8_lossy(&decoded),
        line_breaks_as_lf(&body.render(r))
    );
    Ok(())
}

/// The case the body property found: a CR, a name slot that renders
/// empty, an LF. Such a body keeps lettre's path.
#[test]
fn a_crlf_split_by_a_name_slot_keeps_lettres_path() {
    for source in ["Grüße \r%%lp-name%%\n", "Grüße %%lp-name:a\r\nb%%"] {
        let stored = serde_json::json!({
            "version": 1, "slug": "s", "title": "t", "subject": "t", "preheader": "",
            "issue_url": "https://example.com/s/", "content_hash": "h",
            "html": source, "text": source,
        });
        let issue = SendableIssue::from_stored(&stored.to_string()).expect("a stored issue");
        assert!(EncodedBody::prepare(&issue.text).is_none(), "{source:?}");
    }
}
