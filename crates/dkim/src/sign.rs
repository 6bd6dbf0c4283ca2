//! The signer: prepared once per issue, one `DKIM-Signature` per key per
//! message.

use std::time::SystemTime;

use aws_lc_rs::signature::RSA_PKCS1_SHA256;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::canon::{self, Field};
use crate::{DkimError, Ed25519Key, HEADER_NAME, RsaKey};

/// RFC 6376 §3.7 allows any line length, RFC 5322 asks for at most 78
/// characters before the CRLF; some relays refold longer lines, which
/// relaxed canonicalisation survives, but there is no reason to invite it.
const MAX_LINE: usize = 78;

/// Bytes of the largest RSA signature aws-lc-rs makes (8192 bits).
const MAX_SIGNATURE: usize = 1024;

/// A key a [`Signer`] signs with.
#[derive(Debug)]
pub enum SigningKey {
    /// `a=rsa-sha256`.
    Rsa(RsaKey),
    /// `a=ed25519-sha256` (RFC 8463).
    Ed25519(Ed25519Key),
}

impl From<RsaKey> for SigningKey {
    fn from(key: RsaKey) -> Self {
        Self::Rsa(key)
    }
}

impl From<Ed25519Key> for SigningKey {
    fn from(key: Ed25519Key) -> Self {
        Self::Ed25519(key)
    }
}

impl SigningKey {
    fn algorithm(&self) -> &'static str {
        match self {
            Self::Rsa(_) => "rsa-sha256",
            Self::Ed25519(_) => "ed25519-sha256",
        }
    }
}

/// One signature a [`Signer`] makes: its key and the start of its header,
/// folded, up to and including `s=…;`.
#[derive(Debug)]
struct Prepared {
    key: SigningKey,
    selector: String,
    prefix: String,
    /// The column at the end of `prefix`'s last line.
    column: usize,
}

/// Signs the messages of one issue: created once (keys parsed, header
/// names lower-cased, tag prefixes folded), then [`Signer::sign`] or
/// [`Signer::sign_parts`] per message, from any number of threads.
///
/// With a second key ([`Signer::co_sign`]) every message gets two
/// `DKIM-Signature` fields over the same headers and body, in the order
/// the keys were given. letterpress gives RSA first, so the topmost field
/// is `rsa-sha256`: verifiers that only look at the first signature, or
/// that do not know `ed25519-sha256` (RFC 8463 §5 expects them to ignore
/// it), still find one they can check at the top, and the Ed25519 one
/// is there for those that prefer it.
#[derive(Debug)]
pub struct Signer {
    /// Lower-cased, in `h=` order.
    headers: Vec<String>,
    /// Rendered into each signature's `h=`, with the ones absent from a
    /// message left out.
    signatures: Vec<Prepared>,
    domain: String,
}

impl Signer {
    /// A signer for domain `d=` and selector `s=` with `key`, covering the
    /// header fields named in `headers` (any case; `From` must be among
    /// them, RFC 6376 §5.4).
    ///
    /// A listed header that a message does not have is left out of that
    /// message's `h=` rather than over-signed: a message is signed as it
    /// is, so `h=` says exactly what it carries (letterpress's contract:
    /// Reply-To is in `h=` when it is present). A header that appears more
    /// than once is signed in its last (bottom-most) instance, the one a
    /// verifier pairs with a single `h=` entry (§5.4.2).
    pub fn new(
        domain: &str,
        selector: &str,
        key: impl Into<SigningKey>,
        headers: &[&str],
    ) -> Result<Self, DkimError> {
        check_name("d", domain)?;
        let mut names: Vec<String> = Vec::with_capacity(headers.len());
        for &name in headers {
            let valid = !name.is_empty() && name.bytes().all(|b| b.is_ascii_graphic() && b != b':');
            if !valid {
                return Err(DkimError::HeaderList(format!(
                    "{name:?} is not a header name"
                )));
            }
            let lower = name.to_ascii_lowercase();
            if names.contains(&lower) {
                return Err(DkimError::HeaderList(format!("{name} is listed twice")));
            }
            names.push(lower);
        }
        if !names.iter().any(|n| n == "from") {
            return Err(DkimError::HeaderList(
                "From must be signed (RFC 6376 section 5.4)".into(),
            ));
        }
        let mut signer = Self {
            headers: names,
            signatures: Vec::with_capacity(2),
            domain: domain.to_string(),
        };
        signer.push(selector, key.into())?;
        Ok(signer)
    }

    /// Adds a second signature with another key, under its own selector
    /// (a selector names one key in DNS). It is written below the ones
    /// already there.
    pub fn co_sign(
        mut self,
        selector: &str,
        key: impl Into<SigningKey>,
    ) -> Result<Self, DkimError> {
        self.push(selector, key.into())?;
        Ok(self)
    }

    fn push(&mut self, selector: &str, key: SigningKey) -> Result<(), DkimError> {
        check_name("s", selector)?;
        if self.signatures.iter().any(|s| s.selector == selector) {
            return Err(DkimError::SameSelector(selector.to_string()));
        }
        let mut fold = Fold::new(String::with_capacity(128));
        fold.out.push_str(HEADER_NAME);
        fold.out.push(':');
        fold.column = fold.out.len();
        fold.word("v=1;");
        fold.word(&format!("a={};", key.algorithm()));
        fold.word("c=relaxed/relaxed;");
        fold.word(&format!("d={};", self.domain));
        fold.word(&format!("s={selector};"));
        self.signatures.push(Prepared {
            key,
            selector: selector.to_string(),
            column: fold.column,
            prefix: fold.out,
        });
        Ok(())
    }

    /// Signs `message` (header fields, an empty line, the body; CRLF line
    /// ends, as it goes on the wire) at time `now` (`t=`). Returns the
    /// `DKIM-Signature: …\r\n` field(s) to write before the message,
    /// folded to 78 characters, `b=` last.
    pub fn sign(&self, message: &[u8], now: SystemTime) -> Result<String, DkimError> {
        let (headers, body) = match memchr::memmem::find(message, b"\r\n\r\n") {
            Some(i) => (&message[..i + 2], &message[i + 4..]),
            None if message.ends_with(b"\r\n") => (message, &b""[..]),
            None => {
                return Err(DkimError::Malformed("no CRLF-terminated header block"));
            }
        };
        self.sign_parts(headers, body, now)
    }

    /// [`Signer::sign`] for a message held in two pieces: `headers` (each
    /// field ending in CRLF, without the empty line) and `body` (what
    /// follows the empty line).
    pub fn sign_parts(
        &self,
        headers: &[u8],
        body: &[u8],
        now: SystemTime,
    ) -> Result<String, DkimError> {
        if headers.starts_with(b"\r\n") {
            return Err(DkimError::Malformed("the message has no header fields"));
        }
        let fields = canon::fields(headers)?;
        // The instance of each listed header that is signed, in h= order.
        let mut signed: Vec<(&str, Field<'_>)> = Vec::with_capacity(self.headers.len());
        for name in &self.headers {
            if let Some(f) = fields
                .iter()
                .rev()
                .find(|f| f.name.eq_ignore_ascii_case(name.as_bytes()))
            {
                signed.push((name, *f));
            }
        }
        if !signed.iter().any(|(name, _)| *name == "from") {
            return Err(DkimError::MissingFrom);
        }

        let mut body_hash = canon::Hasher::sha256();
        canon::relaxed_body(body, &mut body_hash);
        let bh = STANDARD.encode(body_hash.finish());

        let mut header_hash = canon::Hasher::sha256();
        for (_, f) in &signed {
            canon::relaxed_header(f.name, f.value, &mut header_hash, true);
        }

        let t = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let mut out = String::with_capacity(self.signatures.len() * 700);
        for s in &self.signatures {
            let start = out.len();
            out.push_str(&s.prefix);
            let mut fold = Fold {
                out,
                column: s.column,
            };
            fold.word(&format!("t={t};"));
            // h=from:to:…; broken after a colon where a line is full (FWS
            // is allowed around the colons, §3.5).
            for (i, (name, _)) in signed.iter().enumerate() {
                let piece = [
                    if i == 0 { "h=" } else { "" },
                    name,
                    if i + 1 == signed.len() { ";" } else { ":" },
                ];
                if i == 0 {
                    fold.word_parts(&piece);
                } else {
                    fold.glue_parts(&piece);
                }
            }
            fold.word_parts(&["bh=", &bh, ";"]);
            fold.word("b=");
            out = fold.out;

            // The field as verifiers hash it: relaxed, with b= empty and
            // no CRLF (§3.7).
            let mut hash = header_hash.clone();
            let value = &out.as_bytes()[start + HEADER_NAME.len() + 1..];
            canon::relaxed_header(HEADER_NAME.as_bytes(), value, &mut hash, false);
            let digest = hash.finish();
            let mut signature = [0u8; MAX_SIGNATURE];
            let signature: &[u8] = match &s.key {
                SigningKey::Rsa(key) => {
                    let len = key.pair.public_modulus_len();
                    let sig = signature
                        .get_mut(..len)
                        .ok_or(DkimError::Signing("rsa-sha256"))?;
                    key.pair
                        .sign_digest(&RSA_PKCS1_SHA256, &digest, sig)
                        .map_err(|_| DkimError::Signing("rsa-sha256"))?;
                    sig
                }
                // RFC 8463 §3: Ed25519 (pure) over the SHA-256 hash.
                SigningKey::Ed25519(key) => {
                    let sig = key
                        .pair
                        .try_sign(digest.as_ref())
                        .map_err(|_| DkimError::Signing("ed25519-sha256"))?;
                    let len = sig.as_ref().len();
                    signature[..len].copy_from_slice(sig.as_ref());
                    &signature[..len]
                }
            };
            let b = STANDARD.encode(signature);
            let mut fold = Fold {
                column: line_column(&out),
                out,
            };
            fold.chars(&b);
            out = fold.out;
            out.push_str("\r\n");
        }
        Ok(out)
    }
}

/// `d=` and `s=` values: dot-separated labels of ASCII letters, digits,
/// `-` (and `_`, which selectors sometimes use), none empty.
fn check_name(tag: &'static str, value: &str) -> Result<(), DkimError> {
    let valid = !value.is_empty()
        && value.len() <= 253
        && value.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    if valid {
        Ok(())
    } else {
        Err(DkimError::InvalidName {
            tag,
            value: value.to_string(),
        })
    }
}

/// The column at the end of `out`'s last line.
fn line_column(out: &str) -> usize {
    out.rfind('\n').map_or(out.len(), |i| out.len() - i - 1)
}

/// Writes tags separated by SP, folding (CRLF SP) where a line would pass
/// [`MAX_LINE`]. A fold only ever replaces a SP or sits where the grammar
/// allows FWS, so the relaxed form of the result is the unfolded one.
struct Fold {
    out: String,
    column: usize,
}

impl Fold {
    fn new(out: String) -> Self {
        let column = line_column(&out);
        Self { out, column }
    }

    /// ` word`, or a new line for it when it does not fit.
    fn word(&mut self, word: &str) {
        self.word_parts(&[word]);
    }

    fn word_parts(&mut self, parts: &[&str]) {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        if self.column + 1 + len > MAX_LINE {
            self.out.push_str("\r\n ");
            self.column = 1;
        } else {
            self.out.push(' ');
            self.column += 1;
        }
        self.push(parts, len);
    }

    /// `word` right after what is there, or on a new line if it does not
    /// fit.
    fn glue_parts(&mut self, parts: &[&str]) {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        if self.column + len > MAX_LINE {
            self.out.push_str("\r\n ");
            self.column = 1;
        }
        self.push(parts, len);
    }

    fn push(&mut self, parts: &[&str], len: usize) {
        for p in parts {
            self.out.push_str(p);
        }
        self.column += len;
    }

    /// A base64 value, filling each line and continuing on the next (FWS
    /// may sit anywhere in a base64 tag value, §3.5).
    fn chars(&mut self, value: &str) {
        let mut rest = value;
        while !rest.is_empty() {
            let room = MAX_LINE.saturating_sub(self.column);
            if room == 0 {
                self.out.push_str("\r\n ");
                self.column = 1;
                continue;
            }
            // base64 is ASCII: every index is a char boundary.
            let (now, later) = rest.split_at(room.min(rest.len()));
            self.out.push_str(now);
            self.column += now.len();
            rest = later;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use aws_lc_rs::signature::{self, KeyPair as _, UnparsedPublicKey};
    use base64::Engine as _;

    use aws_lc_rs::digest::{self, SHA256};

    use super::*;

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

    const MESSAGE: &[u8] = b"From: Rust Trends <news@example.com>\r\n\
        To: reader@example.net\r\n\
        Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?= and a subject long enough\r\n to be folded\r\n\
        Date: Tue, 14 Nov 2023 22:13:20 +0000\r\n\
        Message-ID: <abc@example.com>\r\n\
        List-Id: Rust Trends <news.example.com>\r\n\
        MIME-Version: 1.0\r\n\
        Content-Type: text/plain; charset=utf-8\r\n\
        \r\n\
        Hello  world \r\n\r\n\r\n";

    fn at() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000)
    }

    fn tag(header: &str, name: &str) -> String {
        let unfolded: String = header.replace("\r\n ", " ");
        let needle = format!(" {name}=");
        let start = unfolded.find(&needle).expect("tag present") + needle.len();
        let rest = &unfolded[start..];
        let end = rest.find(';').unwrap_or(rest.trim_end().len());
        rest[..end].replace(' ', "")
    }

    /// The fields of `out`, each with its continuation lines, without the
    /// final CRLF.
    fn unfold_fields(out: &str) -> Vec<String> {
        let mut fields: Vec<String> = Vec::new();
        for line in out.split_inclusive("\r\n") {
            match fields.last_mut() {
                Some(last) if line.starts_with(' ') => last.push_str(line),
                _ => fields.push(line.to_string()),
            }
        }
        fields
            .into_iter()
            .map(|f| f.trim_end_matches("\r\n").to_string())
            .collect()
    }

    /// The header data a verifier hashes, rebuilt from the output.
    fn signed_data(field: &str) -> Vec<u8> {
        let (headers, _) =
            MESSAGE.split_at(memchr::memmem::find(MESSAGE, b"\r\n\r\n").expect("split") + 2);
        let fields = canon::fields(headers).expect("fields");
        let mut data = Vec::new();
        for name in tag(field, "h").split(':') {
            let f = fields
                .iter()
                .rev()
                .find(|f| f.name.eq_ignore_ascii_case(name.as_bytes()))
                .expect("signed header present");
            canon::relaxed_header(f.name, f.value, &mut data, true);
        }
        let without_b = &field[..field.rfind("b=").expect("b=") + 2];
        let (name, value) = without_b.split_once(':').expect("a field");
        canon::relaxed_header(name.as_bytes(), value.as_bytes(), &mut data, false);
        data
    }

    #[test]
    fn rsa_and_ed25519_sign_what_a_verifier_checks() {
        let rsa = RsaKey::generate().expect("rsa");
        let rsa_public = rsa.pair.public_key().as_ref().to_vec();
        let ed = Ed25519Key::generate().expect("ed25519");
        let ed_public = ed.pair.public_key().as_ref().to_vec();
        let signer = Signer::new("example.com", "lp2026", rsa, HEADERS)
            .and_then(|s| s.co_sign("lp2026e", ed))
            .expect("signer");
        let out = signer.sign(MESSAGE, at()).expect("sign");

        let fields = unfold_fields(&out);
        assert_eq!(fields.len(), 2, "{out}");
        assert!(
            fields[0].starts_with(
                "DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=example.com;"
            )
        );
        assert!(fields[1].starts_with(
            "DKIM-Signature: v=1; a=ed25519-sha256; c=relaxed/relaxed; d=example.com;"
        ));
        for line in out.split("\r\n") {
            assert!(line.len() <= MAX_LINE, "{line:?} is {} long", line.len());
        }
        for f in &fields {
            assert_eq!(tag(f, "t"), "1700000000");
            // Reply-To, List-Unsubscribe… are absent and left out.
            assert_eq!(
                tag(f, "h"),
                "from:to:subject:date:message-id:list-id:mime-version:content-type"
            );
            // The relaxed body is "Hello world\r\n".
            let bh = digest::digest(&SHA256, b"Hello world\r\n");
            assert_eq!(tag(f, "bh"), STANDARD.encode(bh));
        }

        let data = signed_data(&fields[0]);
        let b = STANDARD.decode(tag(&fields[0], "b")).expect("base64");
        UnparsedPublicKey::new(&signature::RSA_PKCS1_2048_8192_SHA256, &rsa_public)
            .verify(&data, &b)
            .expect("rsa-sha256 verifies");

        let data = signed_data(&fields[1]);
        let b = STANDARD.decode(tag(&fields[1], "b")).expect("base64");
        let hashed = digest::digest(&SHA256, &data);
        UnparsedPublicKey::new(&signature::ED25519, &ed_public)
            .verify(hashed.as_ref(), &b)
            .expect("ed25519-sha256 verifies over the SHA-256 of the header data");
        assert!(
            UnparsedPublicKey::new(&signature::ED25519, &ed_public)
                .verify(&data, &b)
                .is_err(),
            "RFC 8463 signs the hash, not the data"
        );
    }

    #[test]
    fn sign_and_sign_parts_agree() {
        let signer = Signer::new(
            "example.com",
            "s",
            Ed25519Key::generate().expect("key"),
            HEADERS,
        )
        .expect("signer");
        let split = memchr::memmem::find(MESSAGE, b"\r\n\r\n").expect("split");
        let whole = signer.sign(MESSAGE, at()).expect("sign");
        let parts = signer
            .sign_parts(&MESSAGE[..split + 2], &MESSAGE[split + 4..], at())
            .expect("sign_parts");
        // Ed25519 is deterministic: the same input, the same signature.
        assert_eq!(whole, parts);
    }

    #[test]
    fn construction_refuses_what_would_sign_wrongly() {
        let key = || Ed25519Key::generate().expect("key");
        assert!(matches!(
            Signer::new("example.com", "s", key(), &["To", "Subject"]),
            Err(DkimError::HeaderList(_))
        ));
        assert!(matches!(
            Signer::new("example.com", "s", key(), &["From", "from"]),
            Err(DkimError::HeaderList(_))
        ));
        assert!(matches!(
            Signer::new("example.com", "s", key(), &["From", "Bad Name"]),
            Err(DkimError::HeaderList(_))
        ));
        for (domain, selector) in [
            ("", "s"),
            ("exa mple.com", "s"),
            ("example.com;", "s"),
            ("ex..com", "s"),
            ("bücher.example", "s"),
            ("example.com", "s;t=1"),
            ("example.com", ""),
        ] {
            assert!(
                matches!(
                    Signer::new(domain, selector, key(), HEADERS),
                    Err(DkimError::InvalidName { .. })
                ),
                "{domain:?} {selector:?}"
            );
        }
        let signer = Signer::new("example.com", "s", key(), HEADERS).expect("signer");
        assert!(matches!(
            signer.co_sign("s", key()),
            Err(DkimError::SameSelector(_))
        ));
    }

    #[test]
    fn messages_that_cannot_be_signed_say_why() {
        let signer = Signer::new(
            "example.com",
            "s",
            Ed25519Key::generate().expect("key"),
            HEADERS,
        )
        .expect("signer");
        assert!(matches!(
            signer.sign(b"To: a@x.example\r\n\r\nbody\r\n", at()),
            Err(DkimError::MissingFrom)
        ));
        assert!(matches!(
            signer.sign(b"From: a@x.example\nTo: b@x.example\n\nbody\n", at()),
            Err(DkimError::Malformed(_))
        ));
        assert!(matches!(
            signer.sign(b"\r\nbody\r\n", at()),
            Err(DkimError::Malformed(_))
        ));
        // Headers alone (no body) are a message too.
        assert!(signer.sign(b"From: a@x.example\r\n", at()).is_ok());
    }

    #[test]
    fn long_values_fold_within_78_columns() {
        let rsa = RsaKey::generate().expect("rsa");
        let long = "a".repeat(60);
        let signer =
            Signer::new(&format!("{long}.example.com"), &long, rsa, HEADERS).expect("signer");
        let out = signer.sign(MESSAGE, at()).expect("sign");
        for line in out.trim_end_matches("\r\n").split("\r\n") {
            assert!(line.len() <= MAX_LINE, "{line:?}");
        }
        assert!(out.ends_with("\r\n") && !out.ends_with("\r\n\r\n"));
    }
}
