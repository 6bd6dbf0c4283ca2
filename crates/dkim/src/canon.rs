//! RFC 6376 §3.4.2 and §3.4.4: the "relaxed" canonicalisation of header
//! fields and of the body, written as slices into a [`Sink`] (a running
//! SHA-256 when signing, a `Vec` in the tests) so that a 35 KB body is
//! never copied to be canonicalised.

use crate::DkimError;

/// Where canonical bytes go.
pub(crate) trait Sink {
    fn put(&mut self, bytes: &[u8]);
}

impl Sink for Vec<u8> {
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

const fn is_wsp(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// One header field of a message: `name` as written (before the colon,
/// trailing WSP removed) and `value`, everything after the colon with its
/// folding but without the CRLF that ends the field.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Field<'a> {
    pub(crate) name: &'a [u8],
    pub(crate) value: &'a [u8],
}

/// Splits a header block (fields, each ending in CRLF, without the empty
/// line that separates them from the body) into its fields.
///
/// A line that starts with WSP continues the field above it; any other
/// line must be `name:value`. A bare LF or a line without a colon is
/// refused rather than signed as something a verifier would read
/// differently.
pub(crate) fn fields(block: &[u8]) -> Result<Vec<Field<'_>>, DkimError> {
    // A newsletter message has about 15 fields; 24 avoids regrowth.
    let mut out: Vec<Field<'_>> = Vec::with_capacity(24);
    let mut start: Option<usize> = None;
    let mut pos = 0;
    while pos < block.len() {
        let Some(lf) = memchr::memchr(b'\n', &block[pos..]).map(|i| pos + i) else {
            return Err(DkimError::Malformed(
                "the header block does not end in CRLF",
            ));
        };
        if lf == pos || block[lf - 1] != b'\r' {
            return Err(DkimError::Malformed("a header line ends in a bare LF"));
        }
        let line = &block[pos..lf - 1];
        if line.first().copied().is_some_and(is_wsp) {
            if start.is_none() {
                return Err(DkimError::Malformed(
                    "the first header line is a continuation line",
                ));
            }
        } else {
            if let Some(s) = start {
                out.push(field(&block[s..pos - 2])?);
            }
            start = Some(pos);
        }
        pos = lf + 1;
    }
    if let Some(s) = start {
        out.push(field(&block[s..pos - 2])?);
    }
    Ok(out)
}

fn field(raw: &[u8]) -> Result<Field<'_>, DkimError> {
    let colon =
        memchr::memchr(b':', raw).ok_or(DkimError::Malformed("a header line has no colon"))?;
    let mut name = &raw[..colon];
    while let Some((&last, rest)) = name.split_last() {
        if !is_wsp(last) {
            break;
        }
        name = rest;
    }
    if name.is_empty() {
        return Err(DkimError::Malformed("a header field has an empty name"));
    }
    Ok(Field {
        name,
        value: &raw[colon + 1..],
    })
}

/// A field in relaxed form: `name` lower-cased, `value` unfolded with
/// every run of WSP one SP and none at its ends (so none around the
/// colon either). `end_crlf` adds the CRLF that every signed field ends
/// with; the DKIM-Signature field itself is hashed without it (RFC 6376
/// §3.7).
pub(crate) fn relaxed_header(name: &[u8], value: &[u8], sink: &mut impl Sink, end_crlf: bool) {
    // Names are short (the longest standard one is under 30 bytes); a
    // longer one is lower-cased in pieces.
    let mut lower = [0u8; 64];
    for chunk in name.chunks(lower.len()) {
        let lower = &mut lower[..chunk.len()];
        lower.copy_from_slice(chunk);
        lower.make_ascii_lowercase();
        sink.put(lower);
    }
    sink.put(b":");
    relaxed_value(value, sink);
    if end_crlf {
        sink.put(b"\r\n");
    }
}

/// A header value unfolded, each run of WSP (and the CRLFs of folding)
/// turned into one SP, WSP at both ends removed. Spans without a change
/// are passed on whole.
fn relaxed_value(value: &[u8], sink: &mut impl Sink) {
    let mut wrote = false;
    let mut space = false;
    let mut i = 0;
    while i < value.len() {
        let b = value[i];
        if is_wsp(b) || b == b'\r' || b == b'\n' {
            space = true;
            i += 1;
            continue;
        }
        // A run of ordinary bytes, each single SP between words included
        // as written (the common case: "a b c" needs no change).
        let start = i;
        while i < value.len() {
            let c = value[i];
            if c == b'\t' || c == b'\r' || c == b'\n' {
                break;
            }
            if c == b' '
                && value
                    .get(i + 1)
                    .is_none_or(|&n| is_wsp(n) || n == b'\r' || n == b'\n')
            {
                break;
            }
            i += 1;
        }
        if space && wrote {
            sink.put(b" ");
        }
        sink.put(&value[start..i]);
        wrote = true;
        space = false;
    }
}

/// The body in relaxed form (RFC 6376 §3.4.4): WSP at the end of each line
/// removed, every other run of WSP one SP, the empty lines at the end
/// removed, and a CRLF after the last line if it had none. An empty body
/// (or one of empty lines only) is empty: its hash is SHA-256 of nothing,
/// as dkimpy and OpenDKIM compute it, not of a CRLF (that is the "simple"
/// rule, §3.4.3).
///
/// Only a TAB, two WSP in a row or a SP before a CRLF can change, so the
/// body is searched for those (memchr's vector search) and everything
/// between them passes on as written: a 35 KB message costs little more
/// than its SHA-256.
pub(crate) fn relaxed_body(body: &[u8], sink: &mut impl Sink) {
    // Everything after the last byte that is neither WSP nor part of a
    // CRLF is trailing WSP and empty lines; a lone CR or LF is content.
    let mut end = body.len();
    loop {
        if end >= 2 && body[end - 2] == b'\r' && body[end - 1] == b'\n' {
            end -= 2;
        } else if end >= 1 && is_wsp(body[end - 1]) {
            end -= 1;
        } else {
            break;
        }
    }
    if end == 0 {
        return;
    }
    let body = &body[..end];
    let double = memchr::memmem::Finder::new(b"  ");
    let space_crlf = memchr::memmem::Finder::new(b" \r\n");
    // The next position of each kind of change at or after `pos`
    // (`usize::MAX`: none left), searched again only once passed.
    let find = |what: u8, from: usize| -> usize {
        let rest = &body[from..];
        let found = match what {
            0 => memchr::memchr(b'\t', rest),
            1 => double.find(rest),
            _ => space_crlf.find(rest),
        };
        found.map_or(usize::MAX, |i| from + i)
    };
    let mut next = [find(0, 0), find(1, 0), find(2, 0)];
    let mut pos = 0;
    loop {
        for (what, at) in next.iter_mut().enumerate() {
            if *at < pos {
                *at = find(what as u8, pos);
            }
        }
        let at = next[0].min(next[1]).min(next[2]);
        if at == usize::MAX {
            break;
        }
        // The whole run of WSP around `at`.
        let mut run_start = at;
        while run_start > pos && is_wsp(body[run_start - 1]) {
            run_start -= 1;
        }
        let mut run_end = at;
        while run_end < body.len() && is_wsp(body[run_end]) {
            run_end += 1;
        }
        sink.put(&body[pos..run_start]);
        if !body[run_end..].starts_with(b"\r\n") {
            sink.put(b" ");
        }
        pos = run_end;
    }
    sink.put(&body[pos..]);
    sink.put(b"\r\n");
}

/// A running SHA-256 fed through a buffer: canonicalisation hands over
/// many short pieces (a SP, the text between two runs of WSP), and
/// aws-lc's update costs more per call than copying a few bytes.
#[derive(Clone)]
pub(crate) struct Hasher {
    context: aws_lc_rs::digest::Context,
    buf: [u8; 4096],
    len: usize,
}

impl Hasher {
    pub(crate) fn sha256() -> Self {
        Self {
            context: aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256),
            buf: [0; 4096],
            len: 0,
        }
    }

    pub(crate) fn finish(mut self) -> aws_lc_rs::digest::Digest {
        self.context.update(&self.buf[..self.len]);
        self.context.finish()
    }
}

impl Sink for Hasher {
    fn put(&mut self, bytes: &[u8]) {
        if self.len + bytes.len() > self.buf.len() {
            self.context.update(&self.buf[..self.len]);
            self.len = 0;
            if bytes.len() >= self.buf.len() {
                self.context.update(bytes);
                return;
            }
        }
        self.buf[self.len..self.len + bytes.len()].copy_from_slice(bytes);
        self.len += bytes.len();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(raw: &str) -> String {
        let mut out = Vec::new();
        let f = field(raw.as_bytes()).expect("a field");
        relaxed_header(f.name, f.value, &mut out, true);
        String::from_utf8(out).expect("ASCII in, ASCII out")
    }

    fn body(raw: &str) -> String {
        let mut out = Vec::new();
        relaxed_body(raw.as_bytes(), &mut out);
        String::from_utf8(out).expect("UTF-8 in, UTF-8 out")
    }

    #[test]
    fn header_relaxed_rules() {
        let table = [
            // name lower-cased, WSP around the colon removed
            ("Subject: Hello", "subject:Hello\r\n"),
            ("SUBJECT : Hello", "subject:Hello\r\n"),
            ("Subject:\tHello", "subject:Hello\r\n"),
            ("Subject:Hello", "subject:Hello\r\n"),
            // unfolded
            ("Subject: Hello\r\n World", "subject:Hello World\r\n"),
            ("Subject: Hello\r\n\tWorld", "subject:Hello World\r\n"),
            ("Subject: Hello \r\n  World", "subject:Hello World\r\n"),
            (
                "To: a@x.example,\r\n b@x.example",
                "to:a@x.example, b@x.example\r\n",
            ),
            // runs of WSP collapsed, value case kept
            ("Subject: A  B\t\tC \t D", "subject:A B C D\r\n"),
            // trailing WSP removed
            ("Subject: Hello  \t", "subject:Hello\r\n"),
            ("Subject: Hello\r\n ", "subject:Hello\r\n"),
            // an empty value
            ("X-Empty:", "x-empty:\r\n"),
            ("X-Empty:   ", "x-empty:\r\n"),
            // single spaces inside are kept as they are
            (
                "List-Unsubscribe: <https://x.example/u/t>, <mailto:u@x.example>",
                "list-unsubscribe:<https://x.example/u/t>, <mailto:u@x.example>\r\n",
            ),
            // 8-bit bytes pass through
            ("Subject: Grüße", "subject:Grüße\r\n"),
        ];
        for (raw, want) in table {
            assert_eq!(header(raw), want, "relaxed form of {raw:?}");
        }
    }

    #[test]
    fn body_relaxed_rules() {
        let table = [
            // empty body: nothing (SHA-256 of "" as dkimpy and OpenDKIM)
            ("", ""),
            ("\r\n", ""),
            ("\r\n\r\n\r\n", ""),
            (" \t \r\n\r\n", ""),
            // a CRLF is added to a last line without one
            ("abc", "abc\r\n"),
            ("abc\r\n", "abc\r\n"),
            // trailing WSP removed from each line
            ("abc \t\r\ndef  \r\n", "abc\r\ndef\r\n"),
            // runs of WSP collapsed to one SP, leading ones too
            ("a  b\t\tc \t d\r\n", "a b c d\r\n"),
            ("  indented\r\n", " indented\r\n"),
            ("\tindented\r\n", " indented\r\n"),
            // empty lines at the end removed, inside kept
            ("a\r\n\r\n\r\nb\r\n\r\n\r\n", "a\r\n\r\n\r\nb\r\n"),
            ("a\r\n  \r\nb\r\n", "a\r\n\r\nb\r\n"),
            ("\r\n\r\na\r\n", "\r\n\r\na\r\n"),
            ("a\r\n \r\n\t\r\n", "a\r\n"),
            // a line of WSP alone in the middle becomes empty
            ("a\r\n   \r\nb", "a\r\n\r\nb\r\n"),
            // unchanged runs stay unchanged
            (
                "one\r\ntwo three\r\nfour\r\n",
                "one\r\ntwo three\r\nfour\r\n",
            ),
            // a lone CR or LF is not a line end
            ("a\rb\r\n", "a\rb\r\n"),
            ("a\nb\r\n", "a\nb\r\n"),
            // UTF-8 passes through
            ("Grüße  aus Köln \r\n", "Grüße aus Köln\r\n"),
        ];
        for (raw, want) in table {
            assert_eq!(body(raw), want, "relaxed form of {raw:?}");
        }
    }

    /// RFC 6376 §3.4.4 read literally, line by line: the reference the
    /// search-based `relaxed_body` is compared with.
    fn reference_body(body: &[u8]) -> Vec<u8> {
        let mut lines: Vec<Vec<u8>> = Vec::new();
        let mut rest = body;
        while !rest.is_empty() {
            let (line, next) = match rest.windows(2).position(|w| w == b"\r\n") {
                Some(i) => (&rest[..i], &rest[i + 2..]),
                None => (rest, &b""[..]),
            };
            let mut out = Vec::new();
            let mut in_wsp = false;
            for &b in line {
                if is_wsp(b) {
                    in_wsp = true;
                } else {
                    if in_wsp {
                        out.push(b' ');
                    }
                    in_wsp = false;
                    out.push(b);
                }
            }
            lines.push(out);
            rest = next;
        }
        while lines.last().is_some_and(|l| l.is_empty()) {
            lines.pop();
        }
        lines
            .iter()
            .flat_map(|l| [&l[..], b"\r\n"].concat())
            .collect()
    }

    #[test]
    fn body_matches_the_literal_reading_on_random_input() {
        // A fixed xorshift, so a failure reproduces.
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let alphabet = [
            b' ', b' ', b'\t', b'\r', b'\n', b'a', b'b', 0xc3, 0xbc, b'=',
        ];
        for _ in 0..20_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let len = (state % 40) as usize;
            let mut input = Vec::with_capacity(len);
            for i in 0..len {
                let r = state.rotate_left(i as u32 * 5) ^ (i as u64).wrapping_mul(0x9e37_79b9);
                let b = alphabet[(r % alphabet.len() as u64) as usize];
                // CRLF pairs often, so that lines and empty lines occur.
                if b == b'\r' && !r.is_multiple_of(3) {
                    input.extend_from_slice(b"\r\n");
                } else {
                    input.push(b);
                }
            }
            let mut got = Vec::new();
            relaxed_body(&input, &mut got);
            assert_eq!(
                String::from_utf8_lossy(&got),
                String::from_utf8_lossy(&reference_body(&input)),
                "relaxed form of {:?}",
                String::from_utf8_lossy(&input)
            );
        }
    }

    #[test]
    fn hasher_buffers_without_changing_the_hash() {
        let data: Vec<u8> = (0..20_000u32).map(|i| (i % 251) as u8).collect();
        let mut h = Hasher::sha256();
        let mut at = 0;
        for size in [1, 7, 4095, 4096, 4097, 3, 9000].iter().cycle() {
            let end = (at + size).min(data.len());
            h.put(&data[at..end]);
            at = end;
            if at == data.len() {
                break;
            }
        }
        let want = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &data);
        assert_eq!(h.finish().as_ref(), want.as_ref());
    }

    #[test]
    fn fields_split_and_unfold() {
        let block = b"From: a@x.example\r\nSubject: one\r\n two\r\nTo : b@x.example\r\n";
        let f = fields(block).expect("well-formed");
        let names: Vec<&[u8]> = f.iter().map(|f| f.name).collect();
        assert_eq!(names, [&b"From"[..], b"Subject", b"To"]);
        assert_eq!(f[1].value, b" one\r\n two");
        assert_eq!(f[2].value, b" b@x.example");
    }

    #[test]
    fn fields_refuse_what_a_verifier_would_read_otherwise() {
        for block in [
            &b" continued: x\r\n"[..],
            b"From: a@x.example\nTo: b@x.example\r\n",
            b"From: a@x.example\r\nnot a header\r\n",
            b"From: a@x.example",
            b": no name\r\n",
        ] {
            assert!(
                fields(block).is_err(),
                "{:?}",
                String::from_utf8_lossy(block)
            );
        }
    }
}
