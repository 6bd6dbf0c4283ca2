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

/// A piece of a [`Personalizable`] body (see [`Personalizable::parts`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part<'a> {
    /// Text that is the same for every recipient.
    Literal(&'a str),
    /// Where a recipient's value goes.
    Slot(Slot<'a>),
}

/// A per-recipient value's place in a body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot<'a> {
    /// The recipient's unsubscribe URL.
    UnsubscribeUrl,
    /// The recipient's address.
    Email,
    /// The recipient's name, else `fallback` (written as is).
    Name {
        /// The text used when the recipient has no name (may be empty).
        fallback: &'a str,
    },
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

    /// The body as literal text and slots, in order: what a sender needs to
    /// prepare (e.g. transfer-encode) the literal parts once per issue and
    /// only the values per recipient.
    pub fn parts(&self) -> impl Iterator<Item = Part<'_>> {
        self.segments.iter().map(|segment| match *segment {
            Segment::Literal(a, b) => Part::Literal(&self.source[a..b]),
            Segment::UnsubscribeUrl => Part::Slot(Slot::UnsubscribeUrl),
            Segment::Email => Part::Slot(Slot::Email),
            Segment::Name(a, b) => Part::Slot(Slot::Name {
                fallback: &self.source[a..b],
            }),
        })
    }

    /// Appends what `slot` becomes for `r`, escaped as this body needs:
    /// together with the literal [`parts`](Self::parts) exactly what
    /// [`render_into`](Self::render_into) writes.
    pub fn render_slot_into(&self, slot: Slot<'_>, r: &Recipient<'_>, out: &mut String) {
        match slot {
            Slot::UnsubscribeUrl => self.push_value(out, r.unsubscribe_url),
            Slot::Email => self.push_value(out, r.email),
            Slot::Name { fallback } => match r.name.filter(|n| !n.trim().is_empty()) {
                Some(name) => self.push_value(out, name),
                None => out.push_str(fallback),
            },
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
/// content and in quoted attribute values (html-escape, the one escaper the
/// workspace uses).
pub(crate) fn escape_html_into(value: &str, out: &mut String) {
    html_escape::encode_quoted_attribute_to_string(value, out);
}

/// [`escape_html_into`] returning a new string.
pub(crate) fn escape_html(value: &str) -> String {
    html_escape::encode_quoted_attribute(value).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `parts` and `render_slot_into` put together are `render`.
    #[test]
    fn parts_and_slots_rebuild_the_rendered_body() {
        let source = "Hi %%lp-name:there%%, <a href=\"%%lp-unsubscribe-url%%\">%%lp-email%%</a> %%lp-name%%%%lp-other%%";
        for escape in [Escape::Html, Escape::Text] {
            let body = Personalizable::new(source.to_string(), escape);
            for name in [Some("Ada & <Bob>"), None, Some("  ")] {
                let r = Recipient {
                    email: "a&b@example.com",
                    name,
                    unsubscribe_url: "https://x.example/u/t?a=1&b=2",
                };
                let mut rebuilt = String::new();
                for part in body.parts() {
                    match part {
                        Part::Literal(text) => rebuilt.push_str(text),
                        Part::Slot(slot) => body.render_slot_into(slot, &r, &mut rebuilt),
                    }
                }
                assert_eq!(rebuilt, body.render(&r), "{escape:?} {name:?}");
            }
        }
    }
}
