//! What a sender needs of an issue, apart from what its author needs.
//!
//! [`SendableIssue`] is the composed issue reduced to the parts every
//! message is made from (slug, subject, the personalisable bodies, the
//! content hash) and has a stored form: a store keeps it as an opaque
//! document, and a worker on another machine sends from it without the
//! content tree. The front matter, the MJML source and the lints stay in
//! [`ComposedIssue`](crate::ComposedIssue), which only an author reads.

use crate::personalize::{self, Personalizable, Recipient};

/// An issue ready to be personalised per recipient and sent.
#[derive(Debug, Clone)]
pub struct SendableIssue {
    /// The front matter's `slug` slugified, else the file stem slugified.
    pub slug: String,
    /// The front matter's `title`.
    pub title: String,
    /// The front matter's `subject`, else its `title`.
    pub subject: String,
    /// `preheader`, else `description`, else empty.
    pub preheader: String,
    /// The issue's web address ("view in browser").
    pub issue_url: String,
    /// Hex SHA-256 of the issue source after includes (front matter +
    /// expanded body): the same file composes to the same hash.
    pub content_hash: String,
    /// The HTML part, compiled once by mrml, with the per-recipient markers.
    pub html: Personalizable,
    /// The plain-text part, with the per-recipient markers.
    pub text: Personalizable,
}

/// Version of the stored form; bump when its meaning changes, so that a
/// worker never sends a document it would misread.
const STORED_VERSION: u32 = 1;

/// The stored form: every field a string, the bodies with their markers.
#[derive(serde::Serialize, serde::Deserialize)]
struct Stored<'a> {
    version: u32,
    #[serde(borrow)]
    slug: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    title: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    subject: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    preheader: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    issue_url: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    content_hash: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    html: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    text: std::borrow::Cow<'a, str>,
}

/// Only the version, read first: a document of another version may not
/// have this version's fields.
#[derive(serde::Deserialize)]
struct Version {
    version: u32,
}

/// A stored issue that cannot be read back.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoredIssueError {
    /// Not the JSON document [`SendableIssue::to_stored`] writes.
    #[error("stored issue is unreadable: {0}")]
    Malformed(String),
    /// Written by a build whose stored form this build does not read.
    #[error("stored issue has format version {found}; this build reads version {STORED_VERSION}")]
    Version {
        /// The version found in the document.
        found: u32,
    },
}

impl SendableIssue {
    /// The HTML and text parts for one recipient.
    pub fn personalize(&self, r: &Recipient<'_>) -> (String, String) {
        (self.html.render(r), self.text.render(r))
    }

    /// The issue as one versioned JSON document (the bodies with their
    /// markers), for a store to keep; [`SendableIssue::from_stored`] reads it.
    pub fn to_stored(&self) -> String {
        let stored = Stored {
            version: STORED_VERSION,
            slug: self.slug.as_str().into(),
            title: self.title.as_str().into(),
            subject: self.subject.as_str().into(),
            preheader: self.preheader.as_str().into(),
            issue_url: self.issue_url.as_str().into(),
            content_hash: self.content_hash.as_str().into(),
            html: self.html.as_str().into(),
            text: self.text.as_str().into(),
        };
        serde_json::to_string(&stored).expect("a struct of strings always serialises")
    }

    /// Reads what [`SendableIssue::to_stored`] wrote.
    pub fn from_stored(stored: &str) -> Result<SendableIssue, StoredIssueError> {
        let malformed = |e: serde_json::Error| StoredIssueError::Malformed(e.to_string());
        let Version { version } = serde_json::from_str(stored).map_err(malformed)?;
        if version != STORED_VERSION {
            return Err(StoredIssueError::Version { found: version });
        }
        let s: Stored<'_> = serde_json::from_str(stored).map_err(malformed)?;
        Ok(SendableIssue {
            slug: s.slug.into_owned(),
            title: s.title.into_owned(),
            subject: s.subject.into_owned(),
            preheader: s.preheader.into_owned(),
            issue_url: s.issue_url.into_owned(),
            content_hash: s.content_hash.into_owned(),
            html: Personalizable::new(s.html.into_owned(), personalize::Escape::Html),
            text: Personalizable::new(s.text.into_owned(), personalize::Escape::Text),
        })
    }
}
