//! A strict quoted-printable decoder (RFC 2045 6.7), independent of any
//! encoder under test: it refuses what a careless encoder gets wrong
//! rather than guessing, so a round trip through it checks the encoding
//! as well as the text.

use std::fmt;

/// What makes an encoded text not strict quoted-printable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    /// The 1-based line of the encoded text.
    pub line: usize,
    /// What is wrong with it.
    pub problem: String,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "quoted-printable line {}: {}", self.line, self.problem)
    }
}

impl std::error::Error for Error {}

/// The longest encoded line, line break excluded (RFC 2045 6.7 rule 5).
pub const MAX_LINE: usize = 76;

/// Decodes `encoded`, insisting on the rules: ASCII only, lines ended by
/// CRLF (no bare CR or LF), at most [`MAX_LINE`] characters each, no space
/// or tab at the end of a line, `=` only before two upper-case hex digits
/// or as a line's last character (a soft break).
///
/// A hard line break decodes to `\n`, the line end of the text as it was
/// written; a soft break to nothing.
pub fn decode(encoded: &[u8]) -> Result<Vec<u8>, Error> {
    let fail = |line: usize, problem: String| Err(Error { line, problem });
    if let Some(at) = encoded.iter().position(|b| !b.is_ascii()) {
        let line = 1 + encoded[..at].iter().filter(|&&b| b == b'\n').count();
        return fail(line, format!("byte {:#04x} is not ASCII", encoded[at]));
    }
    let text = std::str::from_utf8(encoded).expect("ASCII is UTF-8");
    let lines: Vec<&str> = text.split("\r\n").collect();
    let mut out = Vec::with_capacity(encoded.len());
    for (i, line) in lines.iter().enumerate() {
        let n = i + 1;
        if line.contains(['\r', '\n']) {
            return fail(n, format!("a bare CR or LF: {line:?}"));
        }
        if line.len() > MAX_LINE {
            return fail(
                n,
                format!("{} characters, over {MAX_LINE}: {line:?}", line.len()),
            );
        }
        if line.ends_with([' ', '\t']) {
            return fail(n, format!("trailing white space: {line:?}"));
        }
        let (body, soft) = match line.strip_suffix('=') {
            Some(b) => (b, true),
            None => (*line, false),
        };
        let bytes = body.as_bytes();
        let mut j = 0;
        while j < bytes.len() {
            if bytes[j] != b'=' {
                out.push(bytes[j]);
                j += 1;
                continue;
            }
            let hex = bytes.get(j + 1..j + 3).unwrap_or(&bytes[j + 1..]);
            let upper_hex = |b: &u8| b.is_ascii_digit() || (b'A'..=b'F').contains(b);
            if hex.len() != 2 || !hex.iter().all(upper_hex) {
                return fail(
                    n,
                    format!(
                        "`=` not followed by two upper-case hex digits: {:?}",
                        String::from_utf8_lossy(&bytes[j..(j + 3).min(bytes.len())])
                    ),
                );
            }
            let hex = std::str::from_utf8(hex).expect("ASCII");
            out.push(u8::from_str_radix(hex, 16).expect("checked hex digits"));
            j += 3;
        }
        if !soft && n < lines.len() {
            out.push(b'\n');
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_escapes_soft_and_hard_breaks() {
        assert_eq!(
            decode(b"a=3Db caf=C3=A9=20\r\nend=20").unwrap(),
            "a=b café \nend ".as_bytes()
        );
        assert_eq!(decode(b"long=\r\nline\r\n").unwrap(), b"longline\n");
        assert_eq!(decode(b"").unwrap(), b"");
    }

    #[test]
    fn refuses_what_rfc_2045_forbids() {
        let long = "x".repeat(77);
        // (encoded, the line at fault, what the message says)
        let cases: [(&[u8], usize, &str); 8] = [
            (long.as_bytes(), 1, "over 76"),
            (b"ok\r\ntrailing \r\n", 2, "trailing white space"),
            (b"tab\t", 1, "trailing white space"),
            (b"bare\nlf", 1, "bare CR or LF"),
            (b"=c3=a9", 1, "upper-case hex"),
            (b"=G1", 1, "upper-case hex"),
            (b"cut =4", 1, "upper-case hex"),
            ("caf\u{e9}".as_bytes(), 1, "not ASCII"),
        ];
        for (encoded, line, says) in cases {
            let e = decode(encoded).expect_err(&String::from_utf8_lossy(encoded));
            assert_eq!(e.line, line, "{e}");
            assert!(e.to_string().contains(says), "{e}");
        }
        assert!(decode("x".repeat(76).as_bytes()).is_ok(), "76 is allowed");
    }
}
