use std::borrow::Cow;
use std::fmt;

/// A subscriber's display name, normalised by the one rule every path that
/// writes a name uses (signup, `subscribers add --name`, CSV import) and
/// that the message builder applies to names stored before the rule.
///
/// The rule: a line break or tab becomes a space (one for a run, so
/// `"Multi\r\nLine"` reads `Multi Line`); every other control character
/// and the bidirectional embedding, override and isolate characters
/// (which reorder the rest of a terminal line or a mail client's `To:`)
/// are removed; white space around the name is trimmed; at most
/// [`SubscriberName::MAX_CHARS`] characters remain. Nothing left means
/// no name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct SubscriberName(String);

/// Why a string is not a [`SubscriberName`]: it is too long once normalised.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the name is {chars} characters long; at most {} are allowed",
    SubscriberName::MAX_CHARS
)]
pub struct NameTooLong {
    /// Its length in characters, after normalisation.
    pub chars: usize,
}

impl SubscriberName {
    /// The longest name kept, in characters (Unicode scalar values).
    pub const MAX_CHARS: usize = 200;

    /// Normalises `input`; `Ok(None)` when nothing is left, an error when
    /// more than [`SubscriberName::MAX_CHARS`] characters are.
    pub fn parse(input: &str) -> Result<Option<Self>, NameTooLong> {
        let name = normalise(input);
        // Bytes bound characters: most names never count them.
        if name.len() > Self::MAX_CHARS {
            let chars = name.chars().count();
            if chars > Self::MAX_CHARS {
                return Err(NameTooLong { chars });
            }
        }
        Ok((!name.is_empty()).then_some(Self(name)))
    }

    /// Normalises `input` and keeps its first [`SubscriberName::MAX_CHARS`]
    /// characters: for a web form's name, and for names already stored.
    pub fn parse_truncated(input: &str) -> Option<Self> {
        let mut name = normalise(input);
        if let Some((cut, _)) = name.char_indices().nth(Self::MAX_CHARS) {
            name.truncate(cut);
            name.truncate(name.trim_end().len());
        }
        (!name.is_empty()).then_some(Self(name))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The name, as an owned string.
    pub fn into_string(self) -> String {
        self.0
    }
}

/// Characters a name never keeps: control characters (C0, DEL, C1) and
/// the bidirectional embeddings, overrides and isolates (U+202A–U+202E,
/// U+2066–U+2069), plus the Unicode line and paragraph separators.
fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{2028}' | '\u{2029}')
}

/// The ones that separate words: they become a space rather than vanish.
fn is_break(c: char) -> bool {
    matches!(
        c,
        '\t' | '\n' | '\u{b}' | '\u{c}' | '\r' | '\u{85}' | '\u{2028}' | '\u{2029}'
    )
}

fn normalise(input: &str) -> String {
    let trimmed = input.trim();
    if !trimmed.chars().any(is_unsafe) {
        return trimmed.to_string();
    }
    let mut out = String::with_capacity(trimmed.len());
    for c in trimmed.chars() {
        if is_break(c) {
            if !out.ends_with(char::is_whitespace) {
                out.push(' ');
            }
        } else if !is_unsafe(c) {
            out.push(c);
        }
    }
    // A removed character may have stood between the name and white space.
    let end = out.trim_end().len();
    out.truncate(end);
    let start = out.len() - out.trim_start().len();
    out.drain(..start);
    out
}

/// `text` with every character a [`SubscriberName`] never keeps written as
/// a visible escape (`\u{1b}`): for showing stored values (a name stored
/// before the rule, a tag) on a terminal, which would otherwise obey them.
pub fn terminal_safe(text: &str) -> Cow<'_, str> {
    if !text.chars().any(is_unsafe) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if is_unsafe(c) {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

impl AsRef<str> for SubscriberName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SubscriberName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(s: &str) -> Option<String> {
        SubscriberName::parse(s)
            .expect("not too long")
            .map(SubscriberName::into_string)
    }

    #[test]
    fn normalises_control_characters_and_white_space() {
        for (input, name) in [
            ("Ada Lovelace", Some("Ada Lovelace")),
            ("  Ada  ", Some("Ada")),
            ("Multi\r\nLine", Some("Multi Line")),
            ("Tab\there", Some("Tab here")),
            ("Ann \r\n Smith", Some("Ann  Smith")),
            ("\u{1b}]0;pwned\u{7}\u{1b}[2J Eve", Some("]0;pwned[2J Eve")),
            ("\u{1b} Eve", Some("Eve")),
            ("Eve\u{202e}evil\u{2066}", Some("Eveevil")),
            ("Zoë \u{200d}👩‍💻", Some("Zoë \u{200d}👩‍💻")),
            ("\u{0}\u{7f}\u{9b}", None),
            ("   ", None),
            ("", None),
        ] {
            assert_eq!(parsed(input).as_deref(), name, "{input:?}");
        }
    }

    #[test]
    fn at_most_200_characters() {
        let max = "é".repeat(200);
        assert_eq!(parsed(&max).as_deref(), Some(max.as_str()));
        assert_eq!(
            SubscriberName::parse(&"é".repeat(201)),
            Err(NameTooLong { chars: 201 })
        );
        // Counted after normalisation.
        let padded = format!("\u{1b}{max}\u{1b}");
        assert_eq!(parsed(&padded).as_deref(), Some(max.as_str()));
        assert_eq!(
            SubscriberName::parse(&"x".repeat(201))
                .unwrap_err()
                .to_string(),
            "the name is 201 characters long; at most 200 are allowed"
        );
    }

    #[test]
    fn terminal_safe_shows_what_a_name_never_keeps() {
        assert_eq!(terminal_safe("Zoë 🦀"), "Zoë 🦀");
        assert_eq!(
            terminal_safe("Eve\u{1b}]0;x\u{7}\r\n\u{202e}"),
            "Eve\\u{1b}]0;x\\u{7}\\u{d}\\u{a}\\u{202e}"
        );
    }

    #[test]
    fn truncated_keeps_the_first_200_characters() {
        let long = "🦀".repeat(500);
        let cut = SubscriberName::parse_truncated(&long).unwrap();
        assert_eq!(cut.as_str(), "🦀".repeat(200));
        let spaced = format!("{} tail", "a".repeat(199));
        assert_eq!(
            SubscriberName::parse_truncated(&spaced).unwrap().as_str(),
            "a".repeat(199),
            "no trailing space after the cut"
        );
        assert_eq!(SubscriberName::parse_truncated("\u{7}"), None);
    }
}
