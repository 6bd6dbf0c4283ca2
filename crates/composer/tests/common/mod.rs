//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use letterpress_composer::{Composer, ComposerSettings, Newsletter};

pub(crate) fn manifest() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub(crate) fn fixtures() -> PathBuf {
    manifest().join("tests/fixtures")
}

pub(crate) fn default_template() -> PathBuf {
    manifest().join("../../templates/default.mjml")
}

pub(crate) fn composer(root: &Path, template: &Path) -> Composer {
    Composer::new(ComposerSettings {
        content_root: root.to_path_buf(),
        issue_url: "https://rust-trends.com/newsletter/{slug}/".into(),
        template: Some(template.to_path_buf()),
        newsletter: Newsletter {
            name: "Fixture Weekly".into(),
            postal_address: "Fixture Street 1\n1000 AA Testville".into(),
            language: Default::default(),
        },
    })
    .expect("composer")
}

/// Values of every `href`/`src` attribute in an HTML document, entities decoded.
pub(crate) fn attribute_urls(html: &str) -> Vec<String> {
    let mut out = Vec::new();
    for attr in ["href=\"", "src=\""] {
        let mut rest = html;
        while let Some(i) = rest.find(attr) {
            rest = &rest[i + attr.len()..];
            let end = rest.find('"').unwrap_or(rest.len());
            out.push(unescape(&rest[..end]));
            rest = &rest[end..];
        }
    }
    out
}

/// Addresses in CSS: `url(...)` and `@import "..."`.
pub(crate) fn css_urls(html: &str) -> Vec<String> {
    let mut out = Vec::new();
    for opener in ["url(", "@import "] {
        let mut rest = html;
        while let Some(i) = rest.find(opener) {
            rest = rest[i + opener.len()..].trim_start_matches(['"', '\'', ' ']);
            let end = rest.find(['"', '\'', ')', ';']).unwrap_or(rest.len());
            out.push(unescape(&rest[..end]));
            rest = &rest[end..];
        }
    }
    out
}

pub(crate) fn unescape(s: &str) -> String {
    html_escape::decode_html_entities(s).into_owned()
}

/// HTML tags that must never appear in a text part.
pub(crate) fn find_html_tag(text: &str) -> Option<String> {
    const TAGS: [&str; 24] = [
        "a",
        "img",
        "br",
        "div",
        "p",
        "q",
        "blockquote",
        "code",
        "span",
        "strong",
        "em",
        "ul",
        "ol",
        "li",
        "h1",
        "h2",
        "h3",
        "table",
        "tr",
        "td",
        "pre",
        "hr",
        "del",
        "sup",
    ];
    let lower = text.to_ascii_lowercase();
    for (i, _) in lower.match_indices('<') {
        let rest = lower[i + 1..].trim_start_matches('/');
        for tag in TAGS {
            if rest
                .strip_prefix(tag)
                .is_some_and(|after| after.starts_with([' ', '>', '/', '\n']))
            {
                return Some(text[i..].chars().take(40).collect());
            }
        }
    }
    None
}
