//! The message as the DATA phase puts it on the wire.

/// The message as the DATA phase sends it: dot-stuffed (a `.` starting a
/// line is doubled, RFC 5321 4.5.2) and closed by `CRLF.CRLF`, written in
/// one piece.
///
/// lettre's `message` does the same stuffing one byte at a time (the
/// largest single cost of a send once the bodies were pre-encoded), so the
/// block is made here with a substring search and handed to `command`,
/// which writes it and reads the reply to the end of data. `None` for a
/// message that is not UTF-8 (it then goes through lettre's `message`).
///
/// A `String`, not a wrapper type: `command` writes `to_string()` of what
/// it is given, which for a `String` is one exact-size copy, where any
/// other `Display` grows a buffer from empty (a dozen reallocations for a
/// 35 KB message).
pub(super) fn data_block(message: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(message).ok()?;
    let mut block = String::with_capacity(text.len() + 64);
    // The codec lettre would use doubles a dot at the very start and after
    // every CRLF; nothing else.
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
    block.push_str("\r\n.\r\n");
    Some(block)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_block_stuffs_dots_at_line_starts_only() {
        let block = data_block(b".a\r\n.b\r\nc.d\r\n..e\n.f").expect("UTF-8");
        assert_eq!(block, "..a\r\n..b\r\nc.d\r\n...e\n.f\r\n.\r\n");
        assert!(data_block(&[0xff, b'a']).is_none());
    }
}
