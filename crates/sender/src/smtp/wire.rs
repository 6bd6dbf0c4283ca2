//! The message as the DATA phase puts it on the wire: dot-stuffed, closed
//! by `CRLF.CRLF`, and only if every line ends in CRLF.

/// A CR or LF that is not part of a CRLF pair.
///
/// Dot-stuffing and the end of data are defined on CRLF lines only
/// (RFC 5321 2.3.8, 4.1.1.4), and servers differ on what a bare LF or a
/// bare CR ends: sent anyway, `LF.LF` or `LF.CRLF` may end the data early
/// for one server and not for the next, which is how SMTP smuggling
/// injects a second message. Such a message is refused, not repaired:
/// every message made here has CRLF line ends, so one without is a bug
/// upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "the message has a bare {} at byte {offset}: only CRLF may end a line on the wire",
    if *byte == b'\r' { "CR" } else { "LF" }
)]
pub struct BareLineEnd {
    /// Where, from the start of the message.
    pub offset: usize,
    /// `b'\r'` or `b'\n'`.
    pub byte: u8,
}

/// The message as the DATA phase sends it: dot-stuffed (a `.` starting a
/// line is doubled, RFC 5321 4.5.2) and closed by `CRLF.CRLF`, written in
/// one piece; or [`BareLineEnd`] if a line does not end in CRLF, before
/// anything is sent. The message is given as its header section (ended by
/// its empty line) and its body, and stuffed from both straight into the
/// block: joining them first was one more copy of the whole message.
///
/// lettre's `message` does the same stuffing one byte at a time (the
/// largest single cost of a send once the bodies were pre-encoded), so the
/// block is made here with a substring search and handed to `command`,
/// which writes it and reads the reply to the end of data. `Ok(None)` for
/// a message that is not UTF-8 (checked here all the same; it then goes
/// through lettre's `message`).
///
/// A `String`, not a wrapper type: `command` writes `to_string()` of what
/// it is given, which for a `String` is one exact-size copy, where any
/// other `Display` grows a buffer from empty (a dozen reallocations for a
/// 35 KB message).
pub(super) fn data_block(head: &[u8], body: &[u8]) -> Result<Option<String>, BareLineEnd> {
    // Each part is checked and stuffed on its own, which is right only if
    // the body starts a line. A head that does not end one (never made
    // here) is joined to the body and treated as one message.
    if !(head.is_empty() || body.is_empty() || head.ends_with(b"\r\n")) {
        return data_block(&[head, body].concat(), &[]);
    }
    for (part, offset) in [(head, 0), (body, head.len())] {
        if !crlf_only(part)
            && let Some(bare) = first_bare_line_end(part)
        {
            return Err(BareLineEnd {
                offset: offset + bare.offset,
                ..bare
            });
        }
    }
    let (Ok(head), Ok(body)) = (std::str::from_utf8(head), std::str::from_utf8(body)) else {
        return Ok(None);
    };
    let mut block = String::with_capacity(head.len() + body.len() + 64);
    stuff_into(&mut block, head);
    stuff_into(&mut block, body);
    block.push_str("\r\n.\r\n");
    Ok(Some(block))
}

/// Appends `text`, which starts a line, with every `.` that starts a line
/// doubled: the codec lettre would use doubles a dot at the very start and
/// after every CRLF; nothing else.
fn stuff_into(block: &mut String, text: &str) {
    if text.starts_with('.') {
        block.push('.');
    }
    // memchr's vectorised search: `str::find` with a three-byte pattern
    // was a visible share of a message's CPU.
    let mut copied = 0;
    for at in memchr::memmem::find_iter(text.as_bytes(), b"\r\n.") {
        // `at` and `at + 3` fall on ASCII bytes, so on char boundaries.
        block.push_str(&text[copied..at + 3]);
        block.push('.');
        copied = at + 3;
    }
    block.push_str(&text[copied..]);
}

/// Whether every CR and LF in `message` is one of a CRLF pair: an LF
/// must follow a CR and a CR must precede an LF, so at every byte "is LF"
/// equals "follows a CR" (and the message neither starts with LF nor ends
/// with CR).
///
/// A pass of its own, branch-free so that it compiles to vector compares
/// (no early exit: a message is valid but for a bug, so it is read whole
/// anyway). Measured on a 35 KB message of 76-character lines (release,
/// this 2-core machine, best of 60 batches): the stuffing alone 2.6 µs,
/// with this check 3.7 µs. Folding the check into the stuffing's search
/// was slower: memchr2 for CR or LF stops at every line end (6.6 µs), and
/// one loop over 32-byte chunks that looks for a bare line end or a dot
/// line at once took 4.8 µs; the substring search for `CRLF.` skips from
/// one dot line to the next, which no per-line-end scan can match.
fn crlf_only(message: &[u8]) -> bool {
    let (Some(&first), Some(&last)) = (message.first(), message.last()) else {
        return true;
    };
    let mut bad = u8::from(first == b'\n') | u8::from(last == b'\r');
    for (before, byte) in message.iter().zip(&message[1..]) {
        bad |= u8::from(*byte == b'\n') ^ u8::from(*before == b'\r');
    }
    bad == 0
}

/// Where the first bare CR or LF is (the error path only).
fn first_bare_line_end(message: &[u8]) -> Option<BareLineEnd> {
    let mut at = 0;
    while at < message.len() {
        match message[at] {
            b'\r' if message.get(at + 1) == Some(&b'\n') => at += 2,
            byte @ (b'\r' | b'\n') => return Some(BareLineEnd { offset: at, byte }),
            _ => at += 1,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The block of `message`, given whole and split at every byte into a
    /// header section and a body: every split gives the same block (or the
    /// same error, at the same offset of the whole message).
    fn block(message: &[u8]) -> Result<Option<String>, BareLineEnd> {
        let whole = data_block(message, &[]);
        for at in 0..=message.len() {
            let (head, body) = message.split_at(at);
            assert_eq!(
                data_block(head, body),
                whole,
                "split at byte {at} of {:?}",
                String::from_utf8_lossy(message)
            );
        }
        whole
    }

    #[test]
    fn data_block_stuffs_dots_at_line_starts_only() {
        let stuffed = block(b".a\r\n.b\r\nc.d\r\n..e\r\nf.\r\n.").unwrap();
        assert_eq!(
            stuffed.as_deref(),
            Some("..a\r\n..b\r\nc.d\r\n...e\r\nf.\r\n..\r\n.\r\n")
        );
        assert_eq!(block(b"").unwrap().as_deref(), Some("\r\n.\r\n"));
        assert_eq!(block(&[0xff, b'a', b'\r', b'\n']), Ok(None));
    }

    #[test]
    fn a_bare_lf_or_cr_is_refused() {
        let bare = |offset, byte| Err(BareLineEnd { offset, byte });
        assert_eq!(block(b"a\r\n.b\n.\nc\r\n"), bare(5, b'\n'));
        assert_eq!(block(b"a\r\n\n.\r\n"), bare(3, b'\n'));
        assert_eq!(block(b"\na"), bare(0, b'\n'));
        assert_eq!(block(b"a\rb\r\n"), bare(1, b'\r'));
        assert_eq!(block(b"a\r\r\n"), bare(1, b'\r'));
        assert_eq!(block(b"a\r"), bare(1, b'\r'));
        assert_eq!(
            block(b"\xff\r\na\nb"),
            bare(4, b'\n'),
            "not UTF-8: checked too"
        );
        assert_eq!(
            BareLineEnd {
                offset: 5,
                byte: b'\n'
            }
            .to_string(),
            "the message has a bare LF at byte 5: only CRLF may end a line on the wire"
        );
    }

    use proptest::prelude::*;

    /// What a server makes of a DATA block (RFC 5321 4.5.2): lines up to
    /// the first that is a single `.`, each with one leading `.` removed,
    /// each ended by CRLF; and whether anything followed that line.
    fn unstuff(block: &str) -> (String, bool) {
        let mut data = String::new();
        let mut rest = block;
        while let Some((line, after)) = rest.split_once("\r\n") {
            if line == "." {
                return (data, !after.is_empty());
            }
            data.push_str(line.strip_prefix('.').unwrap_or(line));
            data.push_str("\r\n");
            rest = after;
        }
        panic!("the block never ends: {block:?}");
    }

    /// A message of CRLF lines rich in dots: lines that are `.`, `..`,
    /// start or end with dots, are empty, or hold anything but CR and LF.
    fn crlf_message() -> impl Strategy<Value = String> {
        let line = prop_oneof![
            proptest::sample::select(vec![".", "..", "...", ".a", "a.", "", " .", "\t", "é."])
                .prop_map(str::to_string),
            "[^\r\n]{0,20}",
        ];
        (proptest::collection::vec(line, 0..12), any::<bool>()).prop_map(|(lines, crlf_end)| {
            let mut m = lines.join("\r\n");
            if crlf_end {
                m.push_str("\r\n");
            }
            m
        })
    }

    /// Where the first CR or LF outside a CRLF pair is, found the slow way.
    fn first_bare(m: &[u8]) -> Option<usize> {
        (0..m.len()).find(|&i| match m[i] {
            b'\n' => i == 0 || m[i - 1] != b'\r',
            b'\r' => m.get(i + 1) != Some(&b'\n'),
            _ => false,
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 1024, failure_persistence: None, ..ProptestConfig::default() })]

        /// The server gets back exactly the message (its last line ended
        /// by the terminator's CRLF), and the only line that is a single
        /// `.` is the terminator, at the very end.
        #[test]
        fn unstuffing_the_block_gives_back_the_message(m in crlf_message()) {
            let block = block(m.as_bytes())
                .expect("CRLF-only")
                .expect("UTF-8");
            let (data, more) = unstuff(&block);
            prop_assert!(!more, "the data ended early: {:?}", block);
            prop_assert_eq!(data, format!("{m}\r\n"));
        }

        /// A bare CR or LF anywhere is refused, at the first one.
        #[test]
        fn a_bare_line_end_anywhere_is_refused(
            m in crlf_message(),
            bare in proptest::sample::select(vec!["\n", "\r", "\n.\n", "\r\r\n", "\n\r"]),
            at in any::<proptest::sample::Index>(),
        ) {
            // Anywhere, even inside a CRLF pair (which leaves its CR bare).
            let places: Vec<usize> = (0..=m.len()).filter(|&i| m.is_char_boundary(i)).collect();
            let i = places[at.index(places.len())];
            let broken = format!("{}{bare}{}", &m[..i], &m[i..]);
            // Only "\n\r" inside a CRLF pair makes two pairs of it.
            let offset = first_bare(broken.as_bytes());
            prop_assume!(offset.is_some());
            let offset = offset.expect("assumed");
            prop_assert_eq!(
                block(broken.as_bytes()),
                Err(BareLineEnd { offset, byte: broken.as_bytes()[offset] })
            );
        }
    }
}
