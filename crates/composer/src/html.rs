//! A small tokenizer for the raw HTML found in Markdown (`<a href=…>`, `<img …>`,
//! `<br>`, `<div>`). It is lenient the way browsers are: unquoted attributes,
//! void elements without `/`, raw `&` in URLs. It is only used to find tags and
//! attributes; anything it does not recognise is passed through as text.

use std::ops::Range;

/// A piece of a raw HTML fragment.
#[derive(Debug)]
pub(crate) enum Token<'a> {
    /// Text between tags (entities not decoded).
    Text(&'a str),
    /// `<!-- ... -->`, `<!DOCTYPE>`, `<?...?>`.
    Comment,
    /// An opening or closing tag.
    Tag(Tag<'a>),
}

/// An opening (`<a href="x">`) or closing (`</a>`) tag.
#[derive(Debug)]
pub(crate) struct Tag<'a> {
    /// Lower-cased tag name.
    pub name: String,
    pub closing: bool,
    /// Written `<tag ... />`.
    pub self_closing: bool,
    pub attrs: Vec<Attr<'a>>,
}

/// One attribute. `value` is the raw text between the quotes (entities not decoded).
#[derive(Debug)]
pub(crate) struct Attr<'a> {
    pub name: &'a str,
    pub value: &'a str,
    /// Byte range of the value in the fragment (without quotes), and whether it was quoted.
    pub value_range: Option<(Range<usize>, bool)>,
}

impl Tag<'_> {
    /// The raw value of an attribute (case-insensitive name).
    pub(crate) fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|a| a.name.eq_ignore_ascii_case(name))
            .map(|a| a.value)
    }
}

/// Splits a fragment into text, comments and tags.
pub(crate) fn tokenize(s: &str) -> Vec<(Token<'_>, Range<usize>)> {
    let b = s.as_bytes();
    let mut tokens = Vec::new();
    let mut text_start = 0;
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'<' {
            i += 1;
            continue;
        }
        let parsed = if s[i..].starts_with("<!--") {
            s[i + 4..]
                .find("-->")
                .map(|e| (Token::Comment, i + 4 + e + 3))
        } else if matches!(b.get(i + 1), Some(b'!' | b'?')) {
            s[i..].find('>').map(|e| (Token::Comment, i + e + 1))
        } else {
            parse_tag(s, i)
        };
        match parsed {
            Some((token, end)) => {
                if text_start < i {
                    tokens.push((Token::Text(&s[text_start..i]), text_start..i));
                }
                tokens.push((token, i..end));
                i = end;
                text_start = end;
            }
            None => i += 1,
        }
    }
    if text_start < s.len() {
        tokens.push((Token::Text(&s[text_start..]), text_start..s.len()));
    }
    tokens
}

fn parse_tag(s: &str, start: usize) -> Option<(Token<'_>, usize)> {
    let b = s.as_bytes();
    let mut i = start + 1;
    let closing = b.get(i) == Some(&b'/');
    if closing {
        i += 1;
    }
    if !b.get(i)?.is_ascii_alphabetic() {
        return None;
    }
    let name_start = i;
    while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'-' || b[i] == b':') {
        i += 1;
    }
    let name = s[name_start..i].to_ascii_lowercase();
    let mut attrs = Vec::new();
    let self_closing;
    loop {
        while i < b.len() && (b[i].is_ascii_whitespace() || b[i] == b'/') {
            i += 1;
        }
        match b.get(i)? {
            b'>' => {
                self_closing = b[i - 1] == b'/';
                break;
            }
            b'<' => return None,
            _ => {}
        }
        let a_start = i;
        while i < b.len() && !b[i].is_ascii_whitespace() && !matches!(b[i], b'=' | b'>' | b'/') {
            i += 1;
        }
        let a_name = &s[a_start..i];
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        if b.get(i) == Some(&b'=') {
            i += 1;
            while i < b.len() && b[i].is_ascii_whitespace() {
                i += 1;
            }
            let (range, quoted) = match b.get(i)? {
                &q @ (b'"' | b'\'') => {
                    let end = i + 1 + s[i + 1..].find(q as char)?;
                    let r = (i + 1)..end;
                    i = end + 1;
                    (r, true)
                }
                _ => {
                    let v_start = i;
                    while i < b.len() && !b[i].is_ascii_whitespace() && b[i] != b'>' {
                        i += 1;
                    }
                    (v_start..i, false)
                }
            };
            attrs.push(Attr {
                name: a_name,
                value: &s[range.clone()],
                value_range: Some((range, quoted)),
            });
        } else {
            attrs.push(Attr {
                name: a_name,
                value: "",
                value_range: None,
            });
        }
    }
    Some((
        Token::Tag(Tag {
            name,
            closing,
            self_closing,
            attrs,
        }),
        i + 1,
    ))
}

/// Decodes HTML entities (`&amp;`, `&#39;`, ...).
pub(crate) fn decode_entities(s: &str) -> std::borrow::Cow<'_, str> {
    if s.contains('&') {
        html_escape::decode_html_entities(s)
    } else {
        std::borrow::Cow::Borrowed(s)
    }
}
