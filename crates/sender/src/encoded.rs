//! Bodies transfer-encoded once per issue.
//!
//! lettre encodes each message's bodies from scratch: line ends to CRLF, a
//! scan to choose the encoding, then quoted-printable byte by byte. For a
//! 35 KB issue that was most of the CPU a message cost. Only the few
//! per-recipient values differ between messages, so the literal text
//! between them is encoded here once, and per message only the values are
//! encoded and spliced in.
//!
//! Each piece is encoded starting at the beginning of a line and ends with a
//! soft line break (`=` CRLF), which decoders remove: the decoded body is
//! exactly what [`Personalizable::render`] gives, while no encoded line
//! exceeds the 76 characters RFC 2045 allows.
//!
//! Only bodies for which lettre would choose quoted-printable are prepared
//! here (text that is not plain short-lined ASCII, and not so far from
//! ASCII that base64 is shorter); others keep lettre's per-message path, so
//! the choice of encoding does not change.

use letterpress_composer::{Part, Personalizable, Recipient, Slot};

/// A quoted-printable body with its per-recipient slots.
pub(crate) struct EncodedBody {
    pieces: Vec<Piece>,
    /// Bytes of the encoded literal pieces, to size each message's buffer.
    literal_len: usize,
}

enum Piece {
    Encoded(Vec<u8>),
    UnsubscribeUrl,
    Email,
    Name { fallback: String },
}

impl EncodedBody {
    /// The prepared body, or `None` where lettre would not use
    /// quoted-printable for it.
    pub fn prepare(body: &Personalizable) -> Option<Self> {
        if !quoted_printable_is_chosen(body.as_str().as_bytes()) {
            return None;
        }
        let parts: Vec<Part<'_>> = body.parts().collect();
        // A CR that ends one literal and an LF that starts the next are one
        // line break in the rendered body when the name slot between them
        // renders empty, but two characters to an encoder that sees one
        // piece at a time (found by the property tests in `props.rs`). The
        // composer never writes such a body; one that has it keeps
        // lettre's path, which sees the whole text.
        let cr_before_name = parts.windows(2).any(|w| {
            matches!(w, [Part::Literal(text), Part::Slot(Slot::Name { .. })] if text.ends_with('\r'))
        });
        let line_end_in_fallback = parts.iter().any(
            |p| matches!(p, Part::Slot(Slot::Name { fallback }) if fallback.contains(['\r', '\n'])),
        );
        if cr_before_name || line_end_in_fallback {
            return None;
        }
        let mut pieces = Vec::with_capacity(parts.len());
        let mut literal_len = 0;
        for (i, part) in parts.iter().enumerate() {
            let last = i + 1 == parts.len();
            pieces.push(match *part {
                Part::Literal(text) => {
                    let mut encoded = Vec::with_capacity(text.len() + text.len() / 8);
                    encode(text.as_bytes(), last, &mut encoded);
                    literal_len += encoded.len();
                    Piece::Encoded(encoded)
                }
                Part::Slot(Slot::UnsubscribeUrl) => Piece::UnsubscribeUrl,
                Part::Slot(Slot::Email) => Piece::Email,
                Part::Slot(Slot::Name { fallback }) => Piece::Name {
                    fallback: fallback.to_string(),
                },
            });
        }
        Some(Self {
            pieces,
            literal_len,
        })
    }

    /// Bytes of the encoded body without its per-recipient values, to size
    /// a message's buffer.
    pub fn literal_len(&self) -> usize {
        self.literal_len
    }

    /// The encoded body for `r`; `body` is the one this was prepared from
    /// (it escapes the values as its part needs).
    #[cfg(test)]
    pub fn render(&self, body: &Personalizable, r: &Recipient<'_>) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.literal_len + 1024);
        self.render_into(body, r, &mut out);
        out
    }

    /// [`EncodedBody::render`], appended to `out`.
    pub fn render_into(&self, body: &Personalizable, r: &Recipient<'_>, out: &mut Vec<u8>) {
        let mut value = String::new();
        let n = self.pieces.len();
        for (i, piece) in self.pieces.iter().enumerate() {
            let slot = match piece {
                Piece::Encoded(bytes) => {
                    out.extend_from_slice(bytes);
                    continue;
                }
                Piece::UnsubscribeUrl => Slot::UnsubscribeUrl,
                Piece::Email => Slot::Email,
                Piece::Name { fallback } => Slot::Name { fallback },
            };
            value.clear();
            body.render_slot_into(slot, r, &mut value);
            encode(value.as_bytes(), i + 1 == n, out);
        }
    }
}

/// lettre's choice (email-encoding's chooser, without SMTPUTF8) is
/// quoted-printable when the text is not 7-bit-safe (non-ASCII, or a line
/// of 76 characters or more) and at most a third of its bytes need escaping.
fn quoted_printable_is_chosen(text: &[u8]) -> bool {
    // The chooser's own arithmetic: from one LF to the next (or from the start).
    let mut last = 0;
    let mut long_line = false;
    for (i, _) in text.iter().enumerate().filter(|(_, c)| **c == b'\n') {
        long_line |= i - last >= 76;
        last = i;
    }
    long_line |= text.len() - last >= 76;
    if text.is_ascii() && !long_line {
        return false;
    }
    let escaped = text
        .iter()
        .filter(|&&b| !matches!(b, b'\t' | b' '..=b'~'))
        .count();
    escaped <= text.len() / 3
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

/// Appends `text` quoted-printable encoded (RFC 2045 6.7), starting at the
/// beginning of a line. Line breaks (LF or CRLF) become CRLF; lines are
/// wrapped with soft breaks at 76 characters. Unless `last`, a line left
/// open at the end is closed with a soft break so the next piece starts on
/// a fresh line; if `last`, trailing white space is encoded.
pub(crate) fn encode(text: &[u8], last: bool, out: &mut Vec<u8>) {
    let mut col = 0usize;
    let mut i = 0;
    while i < text.len() {
        let c = text[i];
        let crlf = c == b'\r' && text.get(i + 1) == Some(&b'\n');
        if c == b'\n' || crlf {
            out.extend_from_slice(b"\r\n");
            col = 0;
            i += if crlf { 2 } else { 1 };
            continue;
        }
        let literal = match c {
            // White space is kept unless it would end an encoded line,
            // where decoders strip it.
            b' ' | b'\t' => match text.get(i + 1) {
                Some(b'\n') => false,
                Some(b'\r') => text.get(i + 2) != Some(&b'\n'),
                Some(_) => true,
                None => !last,
            },
            b'=' => false,
            b'!'..=b'~' => true,
            _ => false,
        };
        let width = if literal { 1 } else { 3 };
        // 75 characters and the soft break's `=` make the 76 allowed.
        if col + width > 75 {
            out.extend_from_slice(b"=\r\n");
            col = 0;
        }
        if literal {
            out.push(c);
        } else {
            out.extend_from_slice(&[b'=', HEX[usize::from(c >> 4)], HEX[usize::from(c & 15)]]);
        }
        col += width;
        i += 1;
    }
    if col > 0 && !last {
        out.extend_from_slice(b"=\r\n");
    }
}

#[cfg(test)]
mod props;

#[cfg(test)]
mod tests {
    use super::*;

    /// The kit's strict RFC 2045 decoder, independent of the encoder: it
    /// also refuses lines over 76 characters and trailing white space.
    fn decode(encoded: &[u8]) -> Vec<u8> {
        letterpress_testkit::quoted_printable::decode(encoded).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn encodes_and_wraps_what_needs_it() {
        let mut out = Vec::new();
        encode("a=b café \nend ".as_bytes(), true, &mut out);
        assert_eq!(out, b"a=3Db caf=C3=A9=20\r\nend=20");
        let long = "x".repeat(200);
        let mut out = Vec::new();
        encode(long.as_bytes(), true, &mut out);
        assert_eq!(decode(&out), long.as_bytes());
    }

    #[test]
    fn pieces_decode_to_the_rendered_body() {
        let source = format!(
            "<p>Hallo %%lp-name:Leser%%, “{}” \n <a href=\"%%lp-unsubscribe-url%%\">abmelden</a> \n\
             für %%lp-email%%</p>%%lp-name%% \n",
            "Grüße an alle unsere Leser, ".repeat(12)
        );
        let stored = serde_json::json!({
            "version": 1, "slug": "s", "title": "t", "subject": "t", "preheader": "",
            "issue_url": "https://example.com/s/", "content_hash": "h",
            "html": source, "text": source,
        });
        let issue = letterpress_composer::SendableIssue::from_stored(&stored.to_string())
            .expect("a stored issue");
        for body in [&issue.html, &issue.text] {
            check_round_trip(body);
        }
    }

    fn check_round_trip(body: &Personalizable) {
        let prepared = EncodedBody::prepare(body).expect("non-ASCII text is quoted-printable");
        for name in [Some("Zoë <&> O'Neil"), None] {
            let r = Recipient {
                email: "zoë@example.com",
                name,
                unsubscribe_url: &format!("https://example.com/u/{}", "t".repeat(120)),
            };
            let encoded = prepared.render(body, &r);
            assert_eq!(decode(&encoded), body.render(&r).as_bytes(), "{name:?}");
        }
    }

    #[test]
    fn short_ascii_and_mostly_non_ascii_bodies_keep_lettres_path() {
        assert!(!quoted_printable_is_chosen(b"short\nascii lines\n"));
        assert!(quoted_printable_is_chosen("a café au lait\n".as_bytes()));
        assert!(quoted_printable_is_chosen("x".repeat(80).as_bytes()));
        assert!(!quoted_printable_is_chosen(
            "日本語のニュースレター".as_bytes()
        ));
    }
}
