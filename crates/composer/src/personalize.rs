//! Per-recipient values, filled in after the issue is composed once.
//!
//! # Markers
//!
//! The composed HTML and text carry these markers where a recipient's value goes.
//! They are made of characters that Markdown, smart punctuation, MJML and HTML all
//! leave alone, so they pass through composition untouched:
//!
//! | marker | value | shortcode that writes it |
//! |---|---|---|
//! | `%%lp-unsubscribe-url%%` | the recipient's unsubscribe URL | `{{ unsubscribe_url() }}` |
//! | `%%lp-email%%` | the recipient's address | `{{ subscriber_email() }}` |
//! | `%%lp-name%%` | the recipient's name, or nothing | `{{ subscriber_name() }}` |
//! | `%%lp-name:there%%` | the name, or the text after `:` when there is none | `{{ subscriber_name(fallback="there") }}` |
//!
//! Operators may write the markers directly in Markdown or in their layout too. In
//! the HTML part the values are HTML-escaped; in the text part they are inserted raw.
//!
//! [`Personalizable`] splits a composed document once into literal segments and
//! slots, so personalising one message is a single pass of string pushes into a
//! buffer allocated once.

/// The marker strings (see the module documentation).
pub mod marker {
    /// Replaced by the recipient's unsubscribe URL.
    pub const UNSUBSCRIBE_URL: &str = "%%lp-unsubscribe-url%%";
    /// Replaced by the recipient's email address.
    pub const EMAIL: &str = "%%lp-email%%";
    /// Replaced by the recipient's name, or nothing when it is unknown.
    pub const NAME: &str = "%%lp-name%%";

    /// The name marker, with an optional fallback for recipients without a name.
    pub fn name(fallback: Option<&str>) -> String {
        match fallback {
            Some(f) => format!("%%lp-name:{f}%%"),
            None => NAME.to_string(),
        }
    }
}

/// One recipient's values.
#[derive(Debug, Clone, Copy)]
pub struct Recipient<'a> {
    /// Email address.
    pub email: &'a str,
    /// Display name, when known.
    pub name: Option<&'a str>,
    /// One-click unsubscribe URL for this recipient.
    pub unsubscribe_url: &'a str,
}

/// How substituted values are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Escape {
    Html,
    Text,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    /// A byte range of `Personalizable::source`.
    Literal(usize, usize),
    UnsubscribeUrl,
    Email,
    /// The name, else the byte range (in `source`) of the fallback text.
    Name(usize, usize),
}

/// A composed body (HTML or text) with its per-recipient slots located.
#[derive(Debug, Clone)]
pub struct Personalizable {
    source: String,
    segments: Vec<Segment>,
    escape: Escape,
}

impl Personalizable {
    pub(crate) fn new(source: String, escape: Escape) -> Personalizable {
        let mut segments = Vec::new();
        let mut literal_start = 0;
        let mut from = 0;
        while let Some(found) = source[from..].find("%%lp-") {
            let start = from + found;
            let body_start = start + 5;
            let Some(len) = source[body_start..].find("%%") else {
                break;
            };
            let body_end = body_start + len;
            let body = &source[body_start..body_end];
            let slot = match body {
                "unsubscribe-url" => Some(Segment::UnsubscribeUrl),
                "email" => Some(Segment::Email),
                "name" => Some(Segment::Name(body_end, body_end)),
                _ => body
                    .strip_prefix("name:")
                    .map(|_| Segment::Name(body_start + 5, body_end)),
            };
            match slot {
                Some(slot) => {
                    if literal_start < start {
                        segments.push(Segment::Literal(literal_start, start));
                    }
                    segments.push(slot);
                    literal_start = body_end + 2;
                    from = literal_start;
                }
                // Not one of ours: leave it as text.
                None => from = body_start,
            }
        }
        if literal_start < source.len() {
            segments.push(Segment::Literal(literal_start, source.len()));
        }
        Personalizable {
            source,
            segments,
            escape,
        }
    }

    /// The body for one recipient.
    pub fn render(&self, r: &Recipient<'_>) -> String {
        let mut out = String::new();
        self.render_into(r, &mut out);
        out
    }

    /// Appends the body for one recipient to `out` (reserving the room first).
    pub fn render_into(&self, r: &Recipient<'_>, out: &mut String) {
        let extra = r.unsubscribe_url.len() + r.email.len() + r.name.map_or(0, str::len);
        out.reserve(self.source.len() + 2 * extra);
        for segment in &self.segments {
            match *segment {
                Segment::Literal(a, b) => out.push_str(&self.source[a..b]),
                Segment::UnsubscribeUrl => self.push_value(out, r.unsubscribe_url),
                Segment::Email => self.push_value(out, r.email),
                Segment::Name(a, b) => match r.name.filter(|n| !n.trim().is_empty()) {
                    Some(name) => self.push_value(out, name),
                    None => out.push_str(&self.source[a..b]),
                },
            }
        }
    }

    /// Bytes of the body with the markers still in it.
    pub fn len(&self) -> usize {
        self.source.len()
    }

    /// Whether the body is empty.
    pub fn is_empty(&self) -> bool {
        self.source.is_empty()
    }

    /// The body with the markers still in it.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    fn push_value(&self, out: &mut String, value: &str) {
        match self.escape {
            Escape::Text => out.push_str(value),
            Escape::Html => escape_html_into(value, out),
        }
    }
}

/// Escapes `&`, `<`, `>`, `"` and `'`, which makes text safe both in element
/// content and in quoted attribute values.
pub(crate) fn escape_html_into(value: &str, out: &mut String) {
    let mut last = 0;
    for (i, c) in value.char_indices() {
        let entity = match c {
            '&' => "&amp;",
            '<' => "&lt;",
            '>' => "&gt;",
            '"' => "&quot;",
            '\'' => "&#39;",
            _ => continue,
        };
        out.push_str(&value[last..i]);
        out.push_str(entity);
        last = i + 1;
    }
    out.push_str(&value[last..]);
}

/// [`escape_html_into`] returning a new string.
pub(crate) fn escape_html(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    escape_html_into(value, &mut out);
    out
}
