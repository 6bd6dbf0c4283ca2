//! Warnings about an issue that still composes: things that render badly or
//! get an email clipped or flagged, reported so the operator can fix them.

use std::fmt;

/// What a [`Lint`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LintKind {
    /// The HTML is over 90 KB; Gmail clips messages past 102 KB.
    HtmlTooLarge,
    /// An image has no (or empty) alt text.
    ImageWithoutAlt,
    /// A WebP or SVG image, which several mail clients do not display.
    UnsupportedImageFormat,
    /// A plain `http:` link or image.
    InsecureLink,
    /// A link with an empty address (`href=""`, `[]()`) or without text.
    EmptyLink,
    /// A relative address that could not be made absolute.
    UnresolvedLink,
}

/// One warning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lint {
    /// What kind of problem.
    pub kind: LintKind,
    /// Human-readable description, naming the offending address where there is one.
    pub message: String,
    /// 1-based line in the issue file (for text from an include: the line of the shortcode).
    pub line: Option<usize>,
}

impl fmt::Display for Lint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "line {line}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

/// HTML size past which [`LintKind::HtmlTooLarge`] is reported.
pub(crate) const HTML_SIZE_WARNING: usize = 90 * 1024;

pub(crate) fn push(lints: &mut Vec<Lint>, kind: LintKind, line: Option<usize>, message: String) {
    lints.push(Lint {
        kind,
        message,
        line,
    });
}

/// Lints for one link or image address as written (entities decoded).
pub(crate) fn check_address(lints: &mut Vec<Lint>, line: usize, what: &str, address: &str) {
    if crate::links::is_insecure(address) {
        push(
            lints,
            LintKind::InsecureLink,
            Some(line),
            format!("insecure (http:) {what}: {address}"),
        );
    }
}
