//! Front matter: splitting it off the body and reading it, as TOML between
//! `+++` lines (Zola) or YAML between `---` lines (Hugo, Jekyll).
//!
//! YAML is only recognised when the file *starts* with `---`: anywhere else a
//! `---` line is a Markdown thematic break.

use std::path::Path;

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use serde_json::{Map, Value};

use crate::error::{ComposeError, line_of};
use crate::language::Language;

/// The keys of an issue's front matter that letterpress uses. Unknown
/// top-level keys (Zola has many: `template`, `taxonomies`, ...) are ignored.
#[derive(Debug, Clone, PartialEq)]
pub struct FrontMatter {
    /// Title of the issue (required).
    pub title: String,
    /// Publication date as written (`"2025-08-31"`), if any.
    pub date: Option<String>,
    /// Explicit slug as written (not yet slugified), if any.
    pub slug: Option<String>,
    /// Short description; the preheader falls back to it.
    pub description: Option<String>,
    /// Email subject; falls back to the title.
    pub subject: Option<String>,
    /// Preview text shown by mail clients next to the subject.
    pub preheader: Option<String>,
    /// When scheduled delivery may send the issue (UTC).
    pub send_at: Option<DateTime<Utc>>,
    /// Drafts are never sent by the scheduler.
    pub draft: bool,
    /// The language, when it is not the newsletter's: `language`,
    /// or `language` in `[extra]` (Zola allows no unknown top-level keys).
    pub language: Option<Language>,
    /// The free `[extra]` table, kept as data (an empty object when absent).
    pub extra: Value,
}

/// Which syntax the front matter was written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Syntax {
    Toml,
    Yaml,
}

/// A source file cut in two.
#[derive(Debug)]
pub(crate) struct Split<'a> {
    pub syntax: Syntax,
    /// The front matter text, without the delimiter lines.
    pub front: &'a str,
    /// Byte offset of `front` in the source.
    pub front_offset: usize,
    /// Byte offset where the body starts (just after the closing delimiter line).
    pub body_offset: usize,
}

/// Finds the front matter block. Errors when there is none or it is unterminated.
pub(crate) fn split<'a>(file: &Path, src: &'a str) -> Result<Split<'a>, ComposeError> {
    // Zola accepts blank lines before `+++`; YAML must open the file (a later `---`
    // is a thematic break, so we do not go looking for one).
    let mut start = 0;
    while let Some(end) = src[start..].find('\n').map(|i| start + i + 1) {
        if !src[start..end].trim().is_empty() || src.starts_with("---") {
            break;
        }
        start = end;
    }
    if !src[start..].starts_with("+++") {
        start = 0;
    }
    let first_end = src[start..].find('\n').map_or(src.len(), |i| start + i + 1);
    let first = src[start..first_end].trim_end();
    let (syntax, closers): (Syntax, &[&str]) = match first {
        "+++" => (Syntax::Toml, &["+++"]),
        "---" => (Syntax::Yaml, &["---", "..."]),
        _ => {
            return Err(ComposeError::front_matter(
                file,
                Some(1),
                "no front matter: an issue must start with `+++` (TOML) or `---` (YAML)",
            ));
        }
    };
    let mut pos = first_end;
    while pos < src.len() {
        let end = src[pos..].find('\n').map_or(src.len(), |i| pos + i + 1);
        if closers.contains(&src[pos..end].trim_end()) {
            return Ok(Split {
                syntax,
                front: &src[first_end..pos],
                front_offset: first_end,
                body_offset: end,
            });
        }
        pos = end;
    }
    Err(ComposeError::front_matter(
        file,
        Some(line_of(src, start)),
        format!(
            "unterminated front matter: no closing `{}` line",
            closers[0]
        ),
    ))
}

/// Parses the front matter of `src` (already split by [`split`]).
pub(crate) fn parse(
    file: &Path,
    src: &str,
    split: &Split<'_>,
) -> Result<FrontMatter, ComposeError> {
    let line_at = |offset_in_front: usize| line_of(src, split.front_offset + offset_in_front);
    let table = match split.syntax {
        Syntax::Toml => {
            let table: toml::Table = toml::from_str(split.front).map_err(|e| {
                let line = e.span().map(|s| line_at(s.start));
                ComposeError::front_matter(
                    file,
                    line,
                    format!("invalid TOML front matter: {}", e.message().trim()),
                )
            })?;
            match toml_to_json(toml::Value::Table(table)) {
                Value::Object(map) => map,
                _ => Map::new(),
            }
        }
        Syntax::Yaml => {
            let value: Value = serde_norway::from_str(split.front).map_err(|e| {
                let line = e.location().map(|l| line_at(0) + l.line() - 1);
                // serde_norway appends its own "at line X column Y"; we report the file line instead.
                let msg = e.to_string();
                let msg = msg.split(" at line ").next().unwrap_or(&msg).to_string();
                ComposeError::front_matter(file, line, format!("invalid YAML front matter: {msg}"))
            })?;
            match value {
                Value::Object(map) => map,
                Value::Null => Map::new(),
                _ => {
                    return Err(ComposeError::front_matter(
                        file,
                        Some(line_at(0)),
                        "invalid YAML front matter: expected a mapping of keys to values",
                    ));
                }
            }
        }
    };
    let key_line = |key: &str| key_offset(split.front, key).map(line_at);
    let err = |key: &str, message: String| ComposeError::front_matter(file, key_line(key), message);

    let string = |key: &str| -> Result<Option<String>, ComposeError> {
        match table.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(err(
                key,
                format!("front matter key `{key}` must be a string"),
            )),
        }
    };

    let title = match string("title")? {
        Some(t) => t,
        None => {
            return Err(ComposeError::front_matter(
                file,
                Some(1),
                "front matter has no `title`",
            ));
        }
    };
    let send_at = match string("send_at")? {
        None => None,
        Some(s) => Some(parse_send_at(&s).ok_or_else(|| {
            err(
                "send_at",
                format!(
                    "front matter key `send_at`: cannot read `{s}` as a date and time \
                     (use RFC 3339, `YYYY-MM-DD HH:MM[:SS]` or `YYYY-MM-DD`, taken as UTC)"
                ),
            )
        })?),
    };
    let draft = match table.get("draft") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => {
            return Err(err(
                "draft",
                "front matter key `draft` must be true or false".into(),
            ));
        }
    };
    let extra = match table.get("extra") {
        None | Some(Value::Null) => Value::Object(Map::new()),
        Some(v @ Value::Object(_)) => v.clone(),
        Some(_) => {
            return Err(err(
                "extra",
                "front matter key `extra` must be a table".into(),
            ));
        }
    };
    let language = match string("language")? {
        Some(tag) => Some(tag),
        None => match extra.get("language") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => {
                return Err(err(
                    "language",
                    "front matter key `extra.language` must be a string".into(),
                ));
            }
        },
    };
    let language = match language {
        None => None,
        Some(tag) => Some(Language::parse(&tag).map_err(|message| {
            let key = if table.contains_key("language") {
                "language"
            } else {
                "extra"
            };
            err(key, format!("front matter key `language`: {message}"))
        })?),
    };
    Ok(FrontMatter {
        title,
        date: string("date")?,
        slug: string("slug")?,
        description: string("description")?,
        subject: string("subject")?,
        preheader: string("preheader")?,
        send_at,
        draft,
        language,
        extra,
    })
}

/// Finds the byte offset (inside the front matter) of the line defining a top-level key,
/// so type errors can point at it: neither TOML nor YAML values keep spans once parsed.
fn key_offset(front: &str, key: &str) -> Option<usize> {
    let mut offset = 0;
    for line in front.split_inclusive('\n') {
        if let Some(rest) = line.strip_prefix(key) {
            let rest = rest.trim_start();
            if rest.starts_with('=') || rest.starts_with(':') {
                return Some(offset);
            }
        }
        offset += line.len();
    }
    None
}

/// TOML values become JSON values; datetimes become their TOML text
/// (`2025-08-31`, `2025-08-31T10:00:00Z`), which [`parse_send_at`] reads.
fn toml_to_json(v: toml::Value) -> Value {
    match v {
        toml::Value::String(s) => Value::String(s),
        toml::Value::Integer(i) => Value::from(i),
        toml::Value::Float(f) => serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number),
        toml::Value::Boolean(b) => Value::Bool(b),
        toml::Value::Datetime(d) => Value::String(d.to_string()),
        toml::Value::Array(a) => Value::Array(a.into_iter().map(toml_to_json).collect()),
        toml::Value::Table(t) => {
            Value::Object(t.into_iter().map(|(k, v)| (k, toml_to_json(v))).collect())
        }
    }
}

/// Reads `send_at`: RFC 3339, or `YYYY-MM-DD[ T]HH:MM[:SS[.f]]` / `YYYY-MM-DD` taken as UTC.
pub(crate) fn parse_send_at(s: &str) -> Option<DateTime<Utc>> {
    let s = s.trim();
    if let Ok(dt) = DateTime::parse_from_rfc3339(s) {
        return Some(dt.with_timezone(&Utc));
    }
    const FORMATS: [&str; 4] = [
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%d %H:%M",
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
    ];
    for format in FORMATS {
        if let Ok(naive) = NaiveDateTime::parse_from_str(s, format) {
            return Some(naive.and_utc());
        }
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|naive| naive.and_utc())
}
