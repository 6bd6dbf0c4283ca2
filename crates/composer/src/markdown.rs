//! Markdown to HTML with pulldown-cmark, rewriting every link and image address
//! (in Markdown syntax and in raw HTML) to an absolute one on the way, and
//! collecting lints. The rewritten event list is also what the plain-text
//! renderer walks, so both parts agree on every address.

use pulldown_cmark::{CowStr, Event, Options, Parser, Tag, TagEnd};
use url::Url;

use crate::html::{self, Token};
use crate::limits::{MAX_CONTENT_DEPTH, Nesting, bad_conditional_comment};
use crate::links::{self, Resolved};
use crate::lint::{self, Lint, LintKind};
use crate::shortcodes::SourceMap;

/// The Markdown dialect: CommonMark plus what Zola enables.
pub(crate) fn options() -> Options {
    Options::ENABLE_TABLES
        | Options::ENABLE_FOOTNOTES
        | Options::ENABLE_STRIKETHROUGH
        | Options::ENABLE_SMART_PUNCTUATION
        | Options::ENABLE_TASKLISTS
}

/// State for the image or link being walked, to lint its text.
struct Open {
    line: usize,
    address: String,
    has_text: bool,
}

/// Raw HTML or nesting the MJML compiler must not see, at a line of the
/// issue file.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Refused {
    /// Elements nested deeper than [`MAX_CONTENT_DEPTH`].
    TooDeep { line: usize },
    /// A conditional comment mrml's tokenizer cannot read.
    ConditionalComment { line: usize },
}

/// HTML elements pulldown-cmark writes for a Markdown element.
fn elements(tag: &Tag<'_>) -> usize {
    match tag {
        // <pre><code>, <table><tbody>, <thead><tr>, <div><sup>
        Tag::CodeBlock(_) | Tag::Table(_) | Tag::TableHead | Tag::FootnoteDefinition(_) => 2,
        // Raw HTML is counted tag by tag; an image is one void element.
        Tag::HtmlBlock | Tag::MetadataBlock(_) | Tag::Image { .. } => 0,
        _ => 1,
    }
}

/// Counts the raw HTML of `fragment`, written from `first_line` on.
fn count_html(nesting: &mut Nesting, fragment: &str, first_line: usize) -> Result<(), Refused> {
    let line_at = |offset: usize| first_line + fragment[..offset].matches('\n').count();
    if let Some(offset) = bad_conditional_comment(fragment) {
        return Err(Refused::ConditionalComment {
            line: line_at(offset),
        });
    }
    nesting.html(fragment).map_err(|offset| Refused::TooDeep {
        line: line_at(offset),
    })
}

/// Parses `body` and returns its events with addresses made absolute.
/// Nesting deeper than [`MAX_CONTENT_DEPTH`] elements is an error: the
/// events are walked before anything reaches mrml.
pub(crate) fn events<'a>(
    body: &'a str,
    base: &Url,
    map: &SourceMap,
    lints: &mut Vec<Lint>,
) -> Result<Vec<Event<'a>>, Refused> {
    let mut nesting = Nesting::new(0, MAX_CONTENT_DEPTH);
    // What each open Markdown element counted, to take off at its end.
    let mut open_elements: Vec<usize> = Vec::new();
    let mut out = Vec::with_capacity(body.len() / 16);
    let mut image: Option<Open> = None;
    let mut link: Option<Open> = None;
    // Raw HTML blocks arrive one line per event; a tag may span lines, so they are joined.
    let mut html_block: Option<(String, usize)> = None;
    for (event, range) in Parser::new_ext(body, options()).into_offset_iter() {
        let line = map.line(range.start);
        match &event {
            Event::Start(tag) => {
                let n = elements(tag);
                open_elements.push(n);
                nesting.open(n).map_err(|()| Refused::TooDeep { line })?;
            }
            Event::End(_) => nesting.close(open_elements.pop().unwrap_or(0)),
            _ => {}
        }
        match event {
            Event::Start(Tag::Link {
                link_type,
                dest_url,
                title,
                id,
            }) => {
                let dest_url =
                    rewrite(base, &dest_url, line, "link", lints).map_or(dest_url, CowStr::from);
                link = Some(Open {
                    line,
                    address: dest_url.to_string(),
                    has_text: false,
                });
                out.push(Event::Start(Tag::Link {
                    link_type,
                    dest_url,
                    title,
                    id,
                }));
            }
            Event::End(TagEnd::Link) => {
                if let Some(open) = link.take().filter(|l| !l.has_text && !l.address.is_empty()) {
                    lint::push(
                        lints,
                        LintKind::EmptyLink,
                        Some(open.line),
                        format!("link without text: {}", open.address),
                    );
                }
                out.push(event);
            }
            Event::Start(Tag::Image {
                link_type,
                dest_url,
                title,
                id,
            }) => {
                check_image(lints, line, &dest_url);
                let dest_url =
                    rewrite(base, &dest_url, line, "image", lints).map_or(dest_url, CowStr::from);
                image = Some(Open {
                    line,
                    address: dest_url.to_string(),
                    has_text: false,
                });
                out.push(Event::Start(Tag::Image {
                    link_type,
                    dest_url,
                    title,
                    id,
                }));
            }
            Event::End(TagEnd::Image) => {
                if let Some(open) = image.take().filter(|i| !i.has_text) {
                    lint::push(
                        lints,
                        LintKind::ImageWithoutAlt,
                        Some(open.line),
                        format!("image without alt text: {}", open.address),
                    );
                }
                out.push(event);
            }
            Event::Text(ref t) | Event::Code(ref t) => {
                let visible = !t.trim().is_empty();
                for open in [&mut image, &mut link].into_iter().flatten() {
                    open.has_text |= visible;
                }
                out.push(event);
            }
            Event::Start(Tag::HtmlBlock) => html_block = Some((String::new(), line)),
            Event::Html(t) if html_block.is_some() => {
                if let Some((buf, _)) = html_block.as_mut() {
                    buf.push_str(&t);
                }
            }
            Event::End(TagEnd::HtmlBlock) => {
                if let Some((buf, first_line)) = html_block.take() {
                    count_html(&mut nesting, &buf, first_line)?;
                    let buf = rewrite_html(base, &buf, first_line, lints).unwrap_or(buf);
                    out.push(Event::Start(Tag::HtmlBlock));
                    out.push(Event::Html(buf.into()));
                    out.push(event);
                }
            }
            Event::InlineHtml(t) | Event::Html(t) => {
                if let Some(open) = link.as_mut() {
                    // `[<img ...>](url)` has visible content.
                    open.has_text |= t.trim_start().to_ascii_lowercase().starts_with("<img");
                }
                count_html(&mut nesting, &t, line)?;
                let t = rewrite_html(base, &t, line, lints).map_or(t, CowStr::from);
                out.push(Event::InlineHtml(t));
            }
            other => out.push(other),
        }
    }
    Ok(out)
}

/// Renders the events to HTML.
pub(crate) fn to_html(events: &[Event<'_>], capacity: usize) -> String {
    let mut html = String::with_capacity(capacity);
    pulldown_cmark::html::push_html(&mut html, events.iter().cloned());
    html
}

fn check_image(lints: &mut Vec<Lint>, line: usize, src: &str) {
    if let Some(format) = links::unsupported_image_format(src) {
        lint::push(
            lints,
            LintKind::UnsupportedImageFormat,
            Some(line),
            format!("{format} image, which some mail clients do not show: {src}"),
        );
    }
}

/// The absolute form of an address, or `None` to keep it; lints it on the way.
fn rewrite(
    base: &Url,
    address: &str,
    line: usize,
    what: &str,
    lints: &mut Vec<Lint>,
) -> Option<String> {
    lint::check_address(lints, line, what, address);
    match links::resolve(base, address) {
        Resolved::Keep => None,
        Resolved::Absolute(url) => Some(url),
        Resolved::Empty => {
            lint::push(
                lints,
                LintKind::EmptyLink,
                Some(line),
                format!("{what} with an empty address"),
            );
            None
        }
        Resolved::Unresolved => {
            lint::push(
                lints,
                LintKind::UnresolvedLink,
                Some(line),
                format!("cannot resolve {what} address: {address}"),
            );
            None
        }
    }
}

/// Rewrites `href` and `src` attributes of a raw HTML fragment, and lints its
/// images and links. `None` when nothing changed.
fn rewrite_html(
    base: &Url,
    fragment: &str,
    first_line: usize,
    lints: &mut Vec<Lint>,
) -> Option<String> {
    if !fragment.contains('<') {
        return None;
    }
    let mut out = String::new();
    let mut copied = 0;
    for (token, range) in html::tokenize(fragment) {
        let Token::Tag(tag) = token else { continue };
        if tag.closing {
            continue;
        }
        let line = first_line + fragment[..range.start].matches('\n').count();
        if tag.name == "img" {
            if tag.attr("alt").is_none_or(|a| a.trim().is_empty()) {
                let src = tag.attr("src").unwrap_or("");
                lint::push(
                    lints,
                    LintKind::ImageWithoutAlt,
                    Some(line),
                    format!("image without alt text: {src}"),
                );
            }
            if let Some(src) = tag.attr("src") {
                check_image(lints, line, src);
            }
        }
        for attr in &tag.attrs {
            let what = if attr.name.eq_ignore_ascii_case("href") {
                "link"
            } else if attr.name.eq_ignore_ascii_case("src") {
                "image"
            } else {
                continue;
            };
            let Some((value_range, quoted)) = attr.value_range.clone() else {
                lint::push(
                    lints,
                    LintKind::EmptyLink,
                    Some(line),
                    format!("{what} with an empty address"),
                );
                continue;
            };
            let address = html::decode_entities(attr.value);
            let rewritten = rewrite(base, &address, line, what, lints);
            // Also re-escapes addresses that are kept but hold a bare `&` (common in
            // pasted URLs), so the HTML is well-formed.
            let escaped = crate::personalize::escape_html(rewritten.as_deref().unwrap_or(&address));
            if escaped != attr.value || !quoted {
                out.push_str(&fragment[copied..value_range.start]);
                if quoted {
                    out.push_str(&escaped);
                } else {
                    out.push('"');
                    out.push_str(&escaped);
                    out.push('"');
                }
                copied = value_range.end;
            }
        }
    }
    if copied == 0 {
        return None;
    }
    out.push_str(&fragment[copied..]);
    Some(out)
}
