//! The plain-text part, written from the Markdown events (not from the HTML, so
//! nothing is lost to tag soup): headings underlined or marked with `#`, lists
//! with `-`/numbers and nesting, emphasis dropped, links and images as numbered
//! references listed at the end, raw HTML `<a>`/`<img>` turned into the same
//! references and every other tag stripped, code blocks indented, and lines
//! wrapped at 72 columns without ever breaking a word.

use std::collections::HashMap;

use pulldown_cmark::{Event, HeadingLevel, Tag, TagEnd};

use crate::html::{self, Token};

/// Line width of the text part.
pub(crate) const WIDTH: usize = 72;

/// The values the text part needs besides the body.
pub(crate) struct TextFrame<'a> {
    pub title: &'a str,
    pub newsletter_name: &'a str,
    pub issue_url: &'a str,
    pub postal_address: &'a str,
}

#[derive(Debug)]
enum Container {
    Quote,
    List(Option<u64>),
    /// A list item or footnote: continuation lines are indented by this much.
    Item(usize),
}

#[derive(Default)]
struct Writer {
    out: String,
    inline: String,
    containers: Vec<Container>,
    /// Marker (`- `, `3. `) for the first line of the next block in the current item.
    marker: Option<String>,
    /// Whether the last block written was a line of a tight list item.
    last_was_item: bool,
    refs: Vec<String>,
    ref_index: HashMap<String, usize>,
    /// Open links: their address and where their text starts in the current sink.
    links: Vec<(String, usize)>,
    image: Option<(String, String)>,
    code: Option<String>,
    heading: Option<HeadingLevel>,
    table: Option<Vec<Vec<String>>>,
}

/// Writes the text part for the (already rewritten) events.
pub(crate) fn render(events: &[Event<'_>], frame: &TextFrame<'_>) -> String {
    let mut w = Writer {
        out: String::with_capacity(8 * 1024),
        ..Writer::default()
    };
    if !frame.title.trim().is_empty() {
        w.inline.push_str(frame.title);
        w.heading = Some(HeadingLevel::H1);
        w.flush(true);
    }
    for event in events {
        w.event(event);
    }
    w.flush(true);
    let mut out = w.out;
    if !w.refs.is_empty() {
        while out.ends_with('\n') {
            out.pop();
        }
        out.push_str("\n\n");
        for (i, url) in w.refs.iter().enumerate() {
            out.push_str(&format!("[{}] {url}\n", i + 1));
        }
    }
    while out.ends_with('\n') {
        out.pop();
    }
    out.push_str("\n\n-- \n");
    out.push_str(&format!(
        "You are receiving {} at {}.\n",
        frame.newsletter_name,
        crate::personalize::marker::EMAIL
    ));
    out.push_str(&format!(
        "View this issue in your browser: {}\n",
        frame.issue_url
    ));
    out.push_str(&format!(
        "Unsubscribe: {}\n",
        crate::personalize::marker::UNSUBSCRIBE_URL
    ));
    if !frame.postal_address.trim().is_empty() {
        out.push_str(frame.postal_address.trim());
        out.push('\n');
    }
    out
}

impl Writer {
    /// Where inline text goes right now.
    fn sink(&mut self) -> &mut String {
        if let Some((_, alt)) = self.image.as_mut() {
            return alt;
        }
        if let Some(code) = self.code.as_mut() {
            return code;
        }
        if let Some(cell) = self
            .table
            .as_mut()
            .and_then(|t| t.last_mut())
            .and_then(|r| r.last_mut())
        {
            return cell;
        }
        &mut self.inline
    }

    fn event(&mut self, event: &Event<'_>) {
        match event {
            Event::Start(tag) => self.start(tag),
            Event::End(tag) => self.end(*tag),
            Event::Text(t) => self.sink().push_str(t),
            Event::Code(t) | Event::InlineMath(t) | Event::DisplayMath(t) => {
                self.sink().push_str(t)
            }
            Event::SoftBreak => self.sink().push(' '),
            Event::HardBreak => self.sink().push('\n'),
            Event::Rule => {
                self.flush(true);
                self.block(vec!["--------".to_string()], true);
            }
            Event::FootnoteReference(label) => {
                let s = format!("[^{label}]");
                self.sink().push_str(&s);
            }
            Event::TaskListMarker(done) => {
                self.sink().push_str(if *done { "[x] " } else { "[ ] " })
            }
            Event::Html(t) => self.raw_html(t, true),
            Event::InlineHtml(t) => self.raw_html(t, false),
        }
    }

    fn start(&mut self, tag: &Tag<'_>) {
        match tag {
            Tag::Paragraph => self.flush(false),
            Tag::Heading { level, .. } => {
                self.flush(true);
                self.heading = Some(*level);
            }
            Tag::BlockQuote(_) => {
                self.flush(true);
                self.containers.push(Container::Quote);
            }
            Tag::CodeBlock(_) => {
                self.flush(true);
                self.code = Some(String::new());
            }
            Tag::HtmlBlock => self.flush(true),
            Tag::List(start) => {
                self.flush(false);
                self.containers.push(Container::List(*start));
            }
            Tag::Item => {
                self.flush(false);
                let marker = match self.containers.last_mut() {
                    Some(Container::List(Some(n))) => {
                        let m = format!("{n}. ");
                        *n += 1;
                        m
                    }
                    _ => "- ".to_string(),
                };
                self.containers
                    .push(Container::Item(marker.chars().count()));
                self.marker = Some(marker);
            }
            Tag::FootnoteDefinition(label) => {
                self.flush(true);
                let marker = format!("[^{label}]: ");
                self.containers.push(Container::Item(4));
                self.marker = Some(marker);
                self.last_was_item = false;
            }
            Tag::Table(_) => {
                self.flush(true);
                self.table = Some(Vec::new());
            }
            Tag::TableHead | Tag::TableRow => {
                if let Some(t) = self.table.as_mut() {
                    t.push(Vec::new());
                }
            }
            Tag::TableCell => {
                if let Some(row) = self.table.as_mut().and_then(|t| t.last_mut()) {
                    row.push(String::new());
                }
            }
            Tag::Link { dest_url, .. } => {
                let at = self.sink().len();
                self.links.push((dest_url.to_string(), at));
            }
            Tag::Image { dest_url, .. } => self.image = Some((dest_url.to_string(), String::new())),
            _ => {}
        }
    }

    fn end(&mut self, tag: TagEnd) {
        match tag {
            TagEnd::Paragraph => self.flush(true),
            TagEnd::Heading(_) => self.flush(true),
            TagEnd::BlockQuote(_) => {
                self.flush(true);
                self.containers.pop();
            }
            TagEnd::CodeBlock => {
                let code = self.code.take().unwrap_or_default();
                let lines = code
                    .trim_end_matches('\n')
                    .lines()
                    .map(|l| format!("    {l}"))
                    .collect();
                self.block(lines, true);
            }
            TagEnd::HtmlBlock => self.flush(true),
            TagEnd::List(_) => {
                self.flush(false);
                self.containers.pop();
                self.last_was_item = false;
            }
            TagEnd::Item => {
                self.flush(false);
                self.containers.pop();
                self.marker = None;
            }
            TagEnd::FootnoteDefinition => {
                self.flush(true);
                self.containers.pop();
                self.marker = None;
            }
            TagEnd::Table => {
                let rows = self.table.take().unwrap_or_default();
                let mut lines = Vec::new();
                for (i, row) in rows.iter().enumerate() {
                    let cells: Vec<String> = row.iter().map(|c| collapse(c)).collect();
                    let line = cells.join(" | ");
                    if i == 0 {
                        let width = line.chars().count().min(WIDTH);
                        lines.push(line);
                        lines.push("-".repeat(width));
                    } else {
                        lines.push(line);
                    }
                }
                self.block(lines, true);
            }
            TagEnd::Link => {
                if let Some((url, at)) = self.links.pop() {
                    self.close_link(&url, at);
                }
            }
            TagEnd::Image => {
                if let Some((url, alt)) = self.image.take() {
                    let alt = collapse(&alt);
                    let n = self.reference(&url);
                    let label = if alt.is_empty() {
                        "image".to_string()
                    } else {
                        alt
                    };
                    let s = format!("{label} [{n}]");
                    self.push_word(&s);
                }
            }
            _ => {}
        }
    }

    /// Appends ` [n]` after a link's text, unless the text already is the address.
    fn close_link(&mut self, url: &str, at: usize) {
        if url.is_empty() || url.starts_with('#') {
            return;
        }
        let text = self
            .sink()
            .get(at..)
            .map(str::trim)
            .unwrap_or("")
            .to_string();
        if text == url || Some(text.as_str()) == url.strip_prefix("mailto:") {
            if !self.ref_index.contains_key(url) {
                // Written out in full already; still listed so every address is in the references.
                self.reference(url);
            }
            return;
        }
        let n = self.reference(url);
        let s = format!(" [{n}]");
        self.sink().push_str(&s);
    }

    fn push_word(&mut self, word: &str) {
        let sink = self.sink();
        if !sink.is_empty() && !sink.ends_with([' ', '\n', '(']) {
            sink.push(' ');
        }
        sink.push_str(word);
    }

    fn reference(&mut self, url: &str) -> usize {
        if let Some(&n) = self.ref_index.get(url) {
            return n;
        }
        self.refs.push(url.to_string());
        let n = self.refs.len();
        self.ref_index.insert(url.to_string(), n);
        n
    }

    /// Raw HTML: links and images become references, `<br>` a line break,
    /// block tags paragraph breaks; every other tag is dropped.
    fn raw_html(&mut self, fragment: &str, block: bool) {
        for (token, _) in html::tokenize(fragment) {
            match token {
                Token::Comment => {}
                Token::Text(t) => {
                    let t = html::decode_entities(t);
                    if block {
                        let t = t.replace('\n', " ");
                        self.sink().push_str(&t);
                    } else {
                        self.sink().push_str(&t);
                    }
                }
                Token::Tag(tag) => match (tag.name.as_str(), tag.closing) {
                    ("a", false) => {
                        let href = html::decode_entities(tag.attr("href").unwrap_or(""))
                            .trim()
                            .to_string();
                        let at = self.sink().len();
                        self.links.push((href, at));
                    }
                    ("a", true) => {
                        if let Some((url, at)) = self.links.pop() {
                            self.close_link(&url, at);
                        }
                    }
                    ("img", false) => {
                        let src = html::decode_entities(tag.attr("src").unwrap_or(""))
                            .trim()
                            .to_string();
                        let alt = collapse(&html::decode_entities(tag.attr("alt").unwrap_or("")));
                        let label = if alt.is_empty() {
                            "image".to_string()
                        } else {
                            alt
                        };
                        let s = if src.is_empty() {
                            label
                        } else {
                            format!("{label} [{}]", self.reference(&src))
                        };
                        self.push_word(&s);
                    }
                    ("br", _) => self.sink().push('\n'),
                    ("q", _) => self.sink().push('"'),
                    ("li", false) => {
                        self.flush(false);
                        self.marker = Some("- ".into());
                    }
                    (
                        "p" | "div" | "blockquote" | "ul" | "ol" | "li" | "table" | "tr" | "hr"
                        | "section" | "h1" | "h2" | "h3" | "h4" | "h5" | "h6" | "pre" | "center",
                        _,
                    ) => self.flush(true),
                    _ => {}
                },
            }
        }
    }

    /// Writes the pending inline text as a wrapped paragraph (or heading).
    /// `loose`: separate it from the previous block by a blank line.
    fn flush(&mut self, loose: bool) {
        let text = std::mem::take(&mut self.inline);
        let heading = self.heading.take();
        let mut paragraphs: Vec<String> = Vec::new();
        let mut blank_run = 0;
        for hard_line in text.split('\n') {
            let words = collapse(hard_line);
            if words.is_empty() {
                blank_run += 1;
                if blank_run == 1 && !paragraphs.is_empty() {
                    paragraphs.push(String::new());
                }
                continue;
            }
            blank_run = 0;
            paragraphs.push(words);
        }
        while paragraphs.last().is_some_and(String::is_empty) {
            paragraphs.pop();
        }
        if paragraphs.is_empty() {
            return;
        }
        let lines = match heading {
            Some(level) => {
                let title = paragraphs.join(" ");
                let mut lines = match level {
                    HeadingLevel::H1 | HeadingLevel::H2 => wrap(&title, WIDTH),
                    other => wrap(&format!("{} {title}", "#".repeat(other as usize)), WIDTH),
                };
                let n = lines.iter().map(|l| l.chars().count()).max().unwrap_or(0);
                match level {
                    HeadingLevel::H1 => lines.push("=".repeat(n)),
                    HeadingLevel::H2 => lines.push("-".repeat(n)),
                    _ => {}
                }
                lines
            }
            None => {
                let width = WIDTH.saturating_sub(self.indent_width()).max(30);
                paragraphs.iter().flat_map(|p| wrap(p, width)).collect()
            }
        };
        let in_item = matches!(self.containers.last(), Some(Container::Item(_)));
        self.block(lines, loose || !in_item || !self.last_was_item);
        self.last_was_item = in_item && !loose;
    }

    fn indent_width(&self) -> usize {
        self.containers
            .iter()
            .map(|c| match c {
                Container::Quote => 2,
                Container::List(_) => 0,
                Container::Item(n) => *n,
            })
            .sum()
    }

    /// Writes finished lines with the container prefixes.
    fn block(&mut self, lines: Vec<String>, blank_before: bool) {
        if lines.is_empty() {
            return;
        }
        if !self.out.is_empty() {
            let wanted = if blank_before { "\n\n" } else { "\n" };
            while !self.out.ends_with(wanted) {
                self.out.push('\n');
            }
        }
        let mut rest = String::new();
        for c in &self.containers {
            match c {
                Container::Quote => rest.push_str("> "),
                Container::List(_) => {}
                Container::Item(n) => rest.push_str(&" ".repeat(*n)),
            }
        }
        let first = match self.marker.take() {
            Some(marker) => {
                let mut first = rest.clone();
                let n = marker.chars().count();
                first.truncate(first.len().saturating_sub(n));
                first.push_str(&marker);
                first
            }
            None => rest.clone(),
        };
        for (i, line) in lines.iter().enumerate() {
            let prefix = if i == 0 { &first } else { &rest };
            if line.is_empty() {
                self.out.push_str(prefix.trim_end());
            } else {
                self.out.push_str(prefix);
                self.out.push_str(line);
            }
            self.out.push('\n');
        }
    }
}

/// Collapses runs of whitespace to one space and trims.
fn collapse(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for word in s.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    out
}

/// Greedy word wrap; a word longer than `width` (a URL) gets a line of its own.
pub(crate) fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    let mut line_width = 0;
    for word in text.split_whitespace() {
        let w = word.chars().count();
        if line_width > 0 && line_width + 1 + w > width {
            lines.push(std::mem::take(&mut line));
            line_width = 0;
        }
        if line_width > 0 {
            line.push(' ');
            line_width += 1;
        }
        line.push_str(word);
        line_width += w;
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}
