//! The one error type of the crate. Every variant carries the file it is about
//! and, where known, the line, so `Display` reads like a compiler message:
//! `issues/42.md:17: unknown shortcode `foo``.

use std::fmt;
use std::path::{Path, PathBuf};

/// Where an error happened: a file and, when known, a 1-based line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The file, as the caller named it (not canonicalised, so messages stay readable).
    pub file: PathBuf,
    /// 1-based line inside `file`, when known.
    pub line: Option<usize>,
}

impl Location {
    pub(crate) fn new(file: &Path, line: Option<usize>) -> Location {
        Location {
            file: file.to_path_buf(),
            line,
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{line}", self.file.display()),
            None => write!(f, "{}", self.file.display()),
        }
    }
}

/// Why an issue (or the layout) could not be composed.
#[derive(Debug, thiserror::Error)]
pub enum ComposeError {
    /// A file could not be read.
    #[error("{location}: {source}")]
    Io {
        /// The file that could not be read.
        location: Location,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The front matter is missing, unterminated, malformed or lacks a required key.
    #[error("{location}: {message}")]
    FrontMatter {
        /// File and line of the problem.
        location: Location,
        /// What is wrong.
        message: String,
    },
    /// A shortcode is unknown, has a bad argument, or an include failed.
    #[error("{location}: {message}")]
    Shortcode {
        /// File and line of the shortcode.
        location: Location,
        /// What is wrong.
        message: String,
    },
    /// The MJML layout is wrong (unknown placeholder, MJML that mrml rejects, ...).
    #[error("{location}: {message}")]
    Template {
        /// The layout file (and line, for placeholders).
        location: Location,
        /// What is wrong.
        message: String,
    },
    /// The issue (or the layout) nests elements deeper than the composer
    /// allows: block quotes, lists, emphasis and raw HTML in the issue, MJML
    /// and HTML elements in the layout and its partials. The MJML compiler
    /// recurses once per level, so without a limit a few thousand levels
    /// overflow the stack and abort the process.
    #[error("nesting deeper than {limit} at {location}: {what}")]
    TooDeep {
        /// Where the limit was crossed.
        location: Location,
        /// The limit.
        limit: usize,
        /// What was nested (e.g. "elements (block quotes, lists, emphasis and raw HTML)").
        what: String,
    },
    /// Raw HTML in the issue that the MJML compiler cannot read.
    #[error("{location}: {message}")]
    Html {
        /// File and line of the HTML.
        location: Location,
        /// What is wrong.
        message: String,
    },
    /// A file is not UTF-8.
    #[error("{location}: not valid UTF-8 (byte {offset} of the file)")]
    NotUtf8 {
        /// The file and the line of the first bad byte.
        location: Location,
        /// Offset of the first bad byte in the file.
        offset: usize,
    },
    /// A setting is unusable (e.g. `newsletter.issue_url` is not a URL once the slug is filled in).
    #[error("{key}: {message}")]
    Settings {
        /// The configuration key, e.g. `newsletter.issue_url`.
        key: &'static str,
        /// What is wrong.
        message: String,
    },
}

impl ComposeError {
    /// The file and line the error is about (`None` for settings errors).
    pub fn location(&self) -> Option<&Location> {
        match self {
            ComposeError::Io { location, .. }
            | ComposeError::FrontMatter { location, .. }
            | ComposeError::Shortcode { location, .. }
            | ComposeError::Template { location, .. }
            | ComposeError::TooDeep { location, .. }
            | ComposeError::Html { location, .. }
            | ComposeError::NotUtf8 { location, .. } => Some(location),
            ComposeError::Settings { .. } => None,
        }
    }

    pub(crate) fn io(file: &Path, source: std::io::Error) -> ComposeError {
        ComposeError::Io {
            location: Location::new(file, None),
            source,
        }
    }

    pub(crate) fn front_matter(
        file: &Path,
        line: Option<usize>,
        message: impl Into<String>,
    ) -> ComposeError {
        ComposeError::FrontMatter {
            location: Location::new(file, line),
            message: message.into(),
        }
    }

    pub(crate) fn shortcode(file: &Path, line: usize, message: impl Into<String>) -> ComposeError {
        ComposeError::Shortcode {
            location: Location::new(file, Some(line)),
            message: message.into(),
        }
    }

    pub(crate) fn template(
        file: &Path,
        line: Option<usize>,
        message: impl Into<String>,
    ) -> ComposeError {
        ComposeError::Template {
            location: Location::new(file, line),
            message: message.into(),
        }
    }
}

/// Decodes a file read as bytes; bad UTF-8 is an error naming the file
/// and the line of the first bad byte.
pub(crate) fn decode(file: &Path, bytes: Vec<u8>) -> Result<String, ComposeError> {
    String::from_utf8(bytes).map_err(|e| {
        let offset = e.utf8_error().valid_up_to();
        let line = e.as_bytes()[..offset]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1;
        ComposeError::NotUtf8 {
            location: Location::new(file, Some(line)),
            offset,
        }
    })
}

/// Reads at most `limit` bytes of `file` (more is an error naming the
/// file), as UTF-8.
pub(crate) fn read_limited(file: &Path, limit: usize) -> Result<String, ComposeError> {
    use std::io::Read;
    let f = std::fs::File::open(file).map_err(|e| ComposeError::io(file, e))?;
    let mut bytes = Vec::new();
    f.take(limit as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| ComposeError::io(file, e))?;
    if bytes.len() > limit {
        return Err(ComposeError::Io {
            location: Location::new(file, None),
            source: std::io::Error::other(format!(
                "the file is larger than {} KB, the most an issue, include or layout may be",
                limit / 1024
            )),
        });
    }
    decode(file, bytes)
}

/// 1-based line number of byte `offset` in `text`.
pub(crate) fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}
