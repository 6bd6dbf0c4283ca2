//! CSV files as `subscribers import` reads them and `export` writes them:
//! line numbers by byte offset, whether the file ended inside a quoted
//! field, and the neutralisation of cells a spreadsheet would evaluate.

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::VecDeque;
use std::io;
use std::rc::Rc;

/// What a spreadsheet takes as the start of a formula (`=`, `+`, `-`, `@`)
/// or strips before looking for one (tab, CR).
const FORMULA_START: [char; 6] = ['=', '+', '-', '@', '\t', '\r'];

/// `cell` as it is written to an export: a cell that would start a formula
/// gets a leading `'`, which spreadsheets take for "text" and hide. So that
/// [`restore`] can take exactly that `'` off again, a cell that already
/// starts with apostrophes before a formula character gets one more.
pub(super) fn neutralise(cell: &str) -> Cow<'_, str> {
    if cell.trim_start_matches('\'').starts_with(FORMULA_START) {
        Cow::Owned(format!("'{cell}"))
    } else {
        Cow::Borrowed(cell)
    }
}

/// The inverse of [`neutralise`]: one leading `'` is taken off a cell whose
/// apostrophes are followed by a formula character, and nothing else is
/// touched, so export -> import gives back every value exactly.
pub(super) fn restore(cell: &str) -> &str {
    match cell.strip_prefix('\'') {
        Some(rest) if rest.trim_start_matches('\'').starts_with(FORMULA_START) => rest,
        _ => cell,
    }
}

/// Where the parser stands in a field, tracked byte by byte the way the
/// csv crate's own parser (csv-core, default settings) reads quotes: a
/// quote opens a quoted field only as a field's first byte, a doubled quote
/// inside one is a literal quote, and a comma, CR or LF outside one ends
/// the field.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
enum Quoting {
    /// At the start of a field (or of a record).
    #[default]
    FieldStart,
    /// In a field that did not start with a quote.
    Unquoted,
    /// Inside a quoted field.
    Quoted,
    /// Just after a quote inside a quoted field: its end, or the first
    /// half of a doubled quote.
    QuoteInQuoted,
}

impl Quoting {
    fn next(self, byte: u8) -> Self {
        use Quoting::*;
        match (self, byte) {
            (Quoted, b'"') => QuoteInQuoted,
            (Quoted, _) => Quoted,
            (FieldStart | QuoteInQuoted, b'"') => Quoted,
            (_, b',' | b'\r' | b'\n') => FieldStart,
            _ => Unquoted,
        }
    }
}

/// Line numbers by byte offset, and how the file ended. The csv crate's
/// own line count is one short for records after a CRLF line end (it
/// counts the LF as part of the next record), and operators look up
/// rejected rows by line in an editor, so the lines are counted here from
/// the raw bytes.
#[derive(Clone, Default)]
pub(super) struct LineIndex(Rc<RefCell<LineState>>);

#[derive(Default)]
struct LineState {
    /// Offsets of newlines read but not yet passed by a record start.
    pending: VecDeque<u64>,
    /// Newlines already passed.
    passed: u64,
    /// The quoting state after the last byte read.
    quoting: Quoting,
    /// Bytes read, and whether the reader has returned the end of the file.
    read: u64,
    at_eof: bool,
}

impl LineIndex {
    /// The 1-based line of the byte at `offset`. Offsets asked for never
    /// go back, and none is a newline that ends a line asked for earlier.
    pub(super) fn line_at(&self, offset: u64) -> u64 {
        let mut st = self.0.borrow_mut();
        while st.pending.front().is_some_and(|&o| o <= offset) {
            st.pending.pop_front();
            st.passed += 1;
        }
        st.passed + 1
    }

    /// The first and last line of the record that starts at byte `start`
    /// and ends before byte `end` (its line end included).
    pub(super) fn lines_of(&self, start: u64, end: u64) -> (u64, u64) {
        let first = self.line_at(start);
        // The last byte is the record's line end, or its last character at
        // the end of the file: either way the line it is on is the last.
        let last = self.line_at(end.saturating_sub(2).max(start));
        (first, last)
    }

    /// Whether the file ended inside a quoted field at byte `end`: the
    /// record that ends there swallowed every line after its opening quote.
    pub(super) fn unterminated_at(&self, end: u64) -> bool {
        let st = self.0.borrow();
        st.at_eof && end == st.read && st.quoting == Quoting::Quoted
    }

    /// Passes `inner`'s bytes through, noting newlines and quotes.
    pub(super) fn reader<R>(&self, inner: R) -> Tracked<R> {
        Tracked {
            inner,
            index: self.clone(),
        }
    }
}

/// A reader that tells its [`LineIndex`] what it reads.
pub(super) struct Tracked<R> {
    inner: R,
    index: LineIndex,
}

impl<R: io::Read> io::Read for Tracked<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let mut st = self.index.0.borrow_mut();
        let offset = st.read;
        let mut quoting = st.quoting;
        for (i, &byte) in buf[..n].iter().enumerate() {
            if byte == b'\n' {
                st.pending.push_back(offset + i as u64);
            }
            quoting = quoting.next(byte);
        }
        st.quoting = quoting;
        st.read += n as u64;
        st.at_eof |= n == 0 && !buf.is_empty();
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn neutralised_cells_round_trip_exactly() {
        for (value, written) in [
            ("=HYPERLINK(\"x\")", "'=HYPERLINK(\"x\")"),
            ("+1 555", "'+1 555"),
            ("-2", "'-2"),
            ("@SUM(A1)", "'@SUM(A1)"),
            ("\tx", "'\tx"),
            ("\rx", "'\rx"),
            ("'=x", "''=x"),
            ("''@", "'''@"),
            ("O'Brien", "O'Brien"),
            ("'quoted'", "'quoted'"),
            ("'", "'"),
            ("", ""),
            ("plain", "plain"),
            ("a=b", "a=b"),
        ] {
            assert_eq!(neutralise(value), written, "{value:?}");
            assert!(
                !neutralise(value).starts_with(FORMULA_START),
                "{value:?} is neutralised"
            );
            assert_eq!(restore(&neutralise(value)), value, "{value:?} round-trips");
        }
    }

    /// The quoting state agrees with what csv-core parses: the end of the
    /// file is inside a quoted field exactly when a quote was left open.
    #[test]
    fn quoting_follows_csv_core() {
        for (csv, open) in [
            ("a,b\n", false),
            ("a,\"b\n", true),
            ("a,\"b\"\n", false),
            ("a,\"b\"\"\n", true),
            ("a,\"b\"\"\"\n", false),
            ("a,\"b\"x\"\n", false),
            ("a,5\" floppy\n", false),
            ("a,\"multi\r\nline\"\r\n", false),
            ("a,\"\n", true),
            ("\"\"", false),
        ] {
            let end = csv.bytes().fold(Quoting::FieldStart, Quoting::next);
            assert_eq!(end == Quoting::Quoted, open, "{csv:?}");
        }
    }

    #[test]
    fn lines_of_a_record_count_its_line_breaks() {
        let index = LineIndex::default();
        let data = b"h\n\"a\nb\nc\",x\nlast";
        let mut reader = index.reader(&data[..]);
        io::copy(&mut reader, &mut io::sink()).unwrap();
        assert_eq!(index.lines_of(2, 12), (2, 4), "a record over three lines");
        assert_eq!(
            index.lines_of(12, 16),
            (5, 5),
            "the last, without a line end"
        );
        assert!(!index.unterminated_at(16));
    }
}
