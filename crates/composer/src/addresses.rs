//! The web addresses an issue points at (links and images, in Markdown and
//! in raw HTML, after includes, made absolute), each with the line it is
//! written on: what `letterpress check --links` fetches.
//!
//! A pass of its own over the expanded body rather than a by-product of
//! composing: only the link check needs it, and composing stays one walk.

use pulldown_cmark::{Event, Parser, Tag};
use url::Url;

use crate::html::{self, Token};
use crate::links::{self, Resolved};
use crate::markdown;
use crate::shortcodes::SourceMap;

/// What an address is used for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressKind {
    /// A link a reader follows (`[text](url)`, `<a href>`).
    Link,
    /// An image the mail client loads (`![alt](url)`, `<img src>`).
    Image,
}

/// One `http:`/`https:` address of an issue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address {
    /// Link or image.
    pub kind: AddressKind,
    /// The absolute address.
    pub url: Url,
    /// The line of the issue file it is written on (for an included file,
    /// the line of the include).
    pub line: usize,
}

/// The addresses of `body` in the order they appear (duplicates kept: each
/// is reported where it is written).
pub(crate) fn collect(body: &str, base: &Url, map: &SourceMap) -> Vec<Address> {
    let mut found = Vec::new();
    let mut push = |kind, address: &str, line| {
        let absolute = match links::resolve(base, address) {
            Resolved::Keep => address.trim().to_string(),
            Resolved::Absolute(url) => url,
            Resolved::Empty | Resolved::Unresolved => return,
        };
        if let Ok(url) = Url::parse(&absolute)
            && matches!(url.scheme(), "http" | "https")
        {
            found.push(Address { kind, url, line });
        }
    };
    for (event, range) in Parser::new_ext(body, markdown::options()).into_offset_iter() {
        let line = map.line(range.start);
        match event {
            Event::Start(Tag::Link { dest_url, .. }) => push(AddressKind::Link, &dest_url, line),
            Event::Start(Tag::Image { dest_url, .. }) => push(AddressKind::Image, &dest_url, line),
            Event::Html(fragment) | Event::InlineHtml(fragment) => {
                for (token, tag_range) in html::tokenize(&fragment) {
                    let Token::Tag(tag) = token else { continue };
                    if tag.closing {
                        continue;
                    }
                    let line = line + fragment[..tag_range.start].matches('\n').count();
                    for attr in &tag.attrs {
                        let kind = if attr.name.eq_ignore_ascii_case("href") {
                            AddressKind::Link
                        } else if attr.name.eq_ignore_ascii_case("src") {
                            AddressKind::Image
                        } else {
                            continue;
                        };
                        push(kind, &html::decode_entities(attr.value), line);
                    }
                }
            }
            _ => {}
        }
    }
    found
}
