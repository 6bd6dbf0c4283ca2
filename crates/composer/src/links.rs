//! Making link and image addresses absolute against the web address, so
//! they work in a mail client that has no notion of "the current page".

use url::Url;

/// What became of one address.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Resolved {
    /// Keep it as written: already absolute (`https:`, `mailto:`, ...), an in-page
    /// `#anchor`, or a personalisation marker.
    Keep,
    /// Empty address.
    Empty,
    /// The absolute address to use instead.
    Absolute(String),
    /// Relative, but it could not be joined to the issue URL.
    Unresolved,
}

/// Resolves `href` (entities already decoded) against the issue URL.
pub(crate) fn resolve(base: &Url, href: &str) -> Resolved {
    let href = href.trim();
    if href.is_empty() {
        return Resolved::Empty;
    }
    if href.starts_with('#') || href.starts_with("%%lp-") {
        return Resolved::Keep;
    }
    match Url::parse(href) {
        Ok(_) => Resolved::Keep,
        Err(url::ParseError::RelativeUrlWithoutBase) => match base.join(href) {
            Ok(url) => Resolved::Absolute(url.into()),
            Err(_) => Resolved::Unresolved,
        },
        Err(_) => Resolved::Unresolved,
    }
}

/// Whether an address is plain `http:` (a lint: mail clients flag it).
pub(crate) fn is_insecure(href: &str) -> bool {
    href.trim_start()
        .get(..5)
        .is_some_and(|p| p.eq_ignore_ascii_case("http:"))
}

/// Whether an image address points at a format many mail clients cannot show.
pub(crate) fn unsupported_image_format(src: &str) -> Option<&'static str> {
    let path = src
        .split(['?', '#'])
        .next()
        .unwrap_or(src)
        .to_ascii_lowercase();
    if path.ends_with(".webp") {
        Some("WebP")
    } else if path.ends_with(".svg") {
        Some("SVG")
    } else {
        None
    }
}
