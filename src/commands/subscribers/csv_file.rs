//! CSV cells as `subscribers export` writes them and `import` reads them
//! back: the neutralisation of cells a spreadsheet would evaluate.

use std::borrow::Cow;

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
}
