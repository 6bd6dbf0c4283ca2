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
    /// The HTML loads a stylesheet (a web font, usually) from another
    /// host: every open tells that host who read the issue.
    RemoteStylesheet,
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

/// The remote stylesheets an HTML document loads: `<link rel="stylesheet">`
/// and CSS `@import` of an absolute `http(s):` or `//` address (what mrml
/// writes for an `mj-font`).
pub(crate) fn remote_stylesheets(html: &str) -> Vec<String> {
    let is_remote = |href: &str| {
        let href = href.trim().to_ascii_lowercase();
        href.starts_with("http:") || href.starts_with("https:") || href.starts_with("//")
    };
    let mut found: Vec<String> = Vec::new();
    let mut keep = |href: &str| {
        if is_remote(href) && !found.iter().any(|f| f == href) {
            found.push(href.to_string());
        }
    };
    for (token, _) in crate::html::tokenize(html) {
        if let crate::html::Token::Tag(tag) = token
            && !tag.closing
            && tag.name.eq_ignore_ascii_case("link")
            && tag
                .attr("rel")
                .is_some_and(|r| r.to_ascii_lowercase().contains("stylesheet"))
            && let Some(href) = tag.attr("href")
        {
            keep(href);
        }
    }
    let mut rest = html;
    while let Some(at) = rest.find("@import") {
        rest = &rest[at + "@import".len()..];
        let target = rest.trim_start();
        let target = target.strip_prefix("url(").unwrap_or(target);
        let target = target.trim_start_matches(['"', '\'', ' ']);
        let end = target
            .find(['"', '\'', ')', ';', ' '])
            .unwrap_or(target.len());
        keep(&target[..end]);
    }
    found
}

#[cfg(test)]
mod remote_stylesheet_tests {
    use super::remote_stylesheets;

    #[test]
    fn remote_links_and_imports_are_found_once() {
        for (html, expected) in [
            ("<p>nothing</p>", vec![]),
            (
                r#"<link href="https://fonts.googleapis.com/css?family=Roboto" rel="stylesheet" type="text/css">
                   <style type="text/css">@import url(https://fonts.googleapis.com/css?family=Roboto);</style>"#,
                vec!["https://fonts.googleapis.com/css?family=Roboto"],
            ),
            (
                r#"<style>@import "//cdn.example/x.css";</style>"#,
                vec!["//cdn.example/x.css"],
            ),
            (
                r#"<link rel="icon" href="https://example.com/f.ico">"#,
                vec![],
            ),
            (r#"<link rel="stylesheet" href="local.css">"#, vec![]),
        ] {
            assert_eq!(remote_stylesheets(html), expected, "{html}");
        }
    }
}
