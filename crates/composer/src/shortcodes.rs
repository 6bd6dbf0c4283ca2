//! Zola-style shortcodes: `{{ name(key="value", ...) }}`.
//!
//! The scanner is written by hand: the only crates that understand this syntax are
//! whole template engines (Tera), which would also interpret every other `{{` in an
//! issue and know nothing of Markdown code. We let pulldown-cmark find the code spans
//! and fenced/indented code blocks (so a shortcode shown as an example stays text)
//! and only recognise `{{ ident(` ... `) }}` outside them; any other `{{` is left as is,
//! as Zola does.
//!
//! Known shortcodes:
//! - `include_md(path="snippets/x.md")`: the Markdown file at `path`, relative to the
//!   content root, expanded recursively. Paths that leave the root and cycles are errors.
//! - `subscriber_name()` / `subscriber_name(fallback="there")`: the recipient's name.
//! - `subscriber_email()`: the recipient's address.
//! - `unsubscribe_url()`: the recipient's one-click unsubscribe address.
//!
//! The last three expand to the personalisation markers documented in [`crate::personalize`].

use std::ops::Range;
use std::path::{Path, PathBuf};

use pulldown_cmark::{Event, Parser, Tag};

use crate::error::{ComposeError, line_of};
use crate::limits::{MAX_EXPANDED_BYTES, MAX_INCLUDES};
use crate::personalize::marker;

/// Maps byte offsets of the expanded body back to lines of the issue file.
/// Text that came from an include maps to the line of its `include_md` shortcode.
#[derive(Debug, Default)]
pub(crate) struct SourceMap {
    segments: Vec<Segment>,
    /// Byte offsets where the issue file's lines start.
    line_starts: Vec<usize>,
}

impl SourceMap {
    /// 1-based line in the issue file for an offset in the expanded body.
    pub(crate) fn line(&self, expanded: usize) -> usize {
        let idx = self.segments.partition_point(|s| s.0 <= expanded);
        let source = match idx.checked_sub(1).map(|i| self.segments[i]) {
            Some((start, src, false)) => src + (expanded - start),
            Some((_, src, true)) => src,
            None => 0,
        };
        self.line_starts.partition_point(|&s| s <= source)
    }
}

/// (offset in expanded text, offset in the issue source, came from a shortcode).
type Segment = (usize, usize, bool);

/// Where the top-level expansion records its segments: the list and the body's
/// offset in the issue source. Nested includes record nothing (they map to the
/// line of their top-level shortcode).
type Segments<'m> = Option<(&'m mut Vec<Segment>, usize)>;

/// Expands the shortcodes of an issue body.
pub(crate) struct Expander<'a> {
    /// Canonical content root.
    pub root: &'a Path,
    /// `include_md` expansions so far (at most [`MAX_INCLUDES`]).
    pub includes: std::cell::Cell<usize>,
}

/// A shortcode call found in the text.
struct Call<'t> {
    range: Range<usize>,
    name: &'t str,
    args: Vec<(&'t str, String)>,
}

impl Expander<'_> {
    /// Expands `src[body_offset..]` (the body of the issue `file`).
    pub(crate) fn expand_issue(
        &self,
        file: &Path,
        src: &str,
        body_offset: usize,
    ) -> Result<(String, SourceMap), ComposeError> {
        let mut map = SourceMap {
            segments: Vec::new(),
            line_starts: std::iter::once(0)
                .chain(src.match_indices('\n').map(|(i, _)| i + 1))
                .collect(),
        };
        let mut stack = vec![file.canonicalize().unwrap_or_else(|_| file.to_path_buf())];
        let mut out = String::with_capacity(src.len() - body_offset + 1024);
        let first_line = line_of(src, body_offset);
        self.expand(
            file,
            &src[body_offset..],
            first_line,
            &mut stack,
            &mut out,
            Some((&mut map.segments, body_offset)),
        )?;
        Ok((out, map))
    }

    fn expand(
        &self,
        file: &Path,
        text: &str,
        first_line: usize,
        stack: &mut Vec<PathBuf>,
        out: &mut String,
        mut segments: Segments<'_>,
    ) -> Result<(), ComposeError> {
        let line_at = |offset: usize| first_line + line_of(text, offset) - 1;
        let mut last = 0;
        for call in find_calls(file, text, first_line)? {
            if let Some((segs, base)) = segments.as_mut() {
                segs.push((out.len(), *base + last, false));
                out.push_str(&text[last..call.range.start]);
                segs.push((out.len(), *base + call.range.start, true));
            } else {
                out.push_str(&text[last..call.range.start]);
            }
            last = call.range.end;
            let line = line_at(call.range.start);
            let bad = |msg: String| ComposeError::shortcode(file, line, msg);
            match call.name {
                "include_md" => {
                    let path = only_arg(&call, "path", true)
                        .map_err(bad)?
                        .unwrap_or_default();
                    self.include(file, line, &path, stack, out)?;
                }
                "subscriber_name" => {
                    let fallback = only_arg(&call, "fallback", false).map_err(bad)?;
                    if let Some(f) = &fallback {
                        // The fallback travels through Markdown and MJML inside the marker, so
                        // it is limited to characters neither of them rewrites.
                        if !f
                            .chars()
                            .all(|c| c.is_alphanumeric() || " ,.!?-".contains(c))
                        {
                            return Err(bad(format!(
                                "bad argument `fallback` of `subscriber_name`: `{f}` may only contain \
                                 letters, digits, spaces and , . ! ? -"
                            )));
                        }
                    }
                    out.push_str(&marker::name(fallback.as_deref()));
                }
                "subscriber_email" => {
                    no_args(&call).map_err(bad)?;
                    out.push_str(marker::EMAIL);
                }
                "unsubscribe_url" => {
                    no_args(&call).map_err(bad)?;
                    out.push_str(marker::UNSUBSCRIBE_URL);
                }
                other => {
                    return Err(bad(format!(
                        "unknown shortcode `{other}` (known: include_md, subscriber_name, subscriber_email, unsubscribe_url)"
                    )));
                }
            }
        }
        if let Some((segs, base)) = segments.as_mut() {
            segs.push((out.len(), *base + last, false));
        }
        out.push_str(&text[last..]);
        Ok(())
    }

    fn include(
        &self,
        file: &Path,
        line: usize,
        path: &str,
        stack: &mut Vec<PathBuf>,
        out: &mut String,
    ) -> Result<(), ComposeError> {
        let bad = |msg: String| ComposeError::shortcode(file, line, msg);
        let target = self.root.join(path);
        if Path::new(path).is_absolute() {
            return Err(bad(format!(
                "include_md: `{path}` must be relative to the content root"
            )));
        }
        let canonical = target.canonicalize().map_err(|e| {
            bad(format!(
                "include_md: cannot open `{path}` (looked for {}): {e}",
                target.display()
            ))
        })?;
        if !canonical.starts_with(self.root) {
            return Err(bad(format!(
                "include_md: `{path}` is outside the content root {}",
                self.root.display()
            )));
        }
        if stack.contains(&canonical) {
            let chain: Vec<String> = stack
                .iter()
                .chain(std::iter::once(&canonical))
                .map(|p| p.display().to_string())
                .collect();
            return Err(bad(format!(
                "include_md: include cycle: {}",
                chain.join(" -> ")
            )));
        }
        let count = self.includes.get() + 1;
        self.includes.set(count);
        if count > MAX_INCLUDES {
            return Err(bad(format!(
                "include_md: more than {MAX_INCLUDES} includes in one issue \
                 (each time a file is included counts, nested ones too)"
            )));
        }
        let too_large = || {
            bad(format!(
                "include_md: with `{path}` the issue grows past {} KB of Markdown, \
                 the most it may expand to",
                MAX_EXPANDED_BYTES / 1024
            ))
        };
        let budget = MAX_EXPANDED_BYTES.saturating_sub(out.len());
        let mut bytes = Vec::new();
        std::fs::File::open(&canonical)
            .and_then(|f| {
                use std::io::Read;
                f.take(budget as u64 + 1).read_to_end(&mut bytes)
            })
            .map_err(|e| bad(format!("include_md: cannot read `{path}`: {e}")))?;
        if bytes.len() > budget {
            return Err(too_large());
        }
        let text = crate::error::decode(&target, bytes).map_err(|e| match e {
            ComposeError::NotUtf8 { location, offset } => ComposeError::Shortcode {
                location,
                message: format!(
                    "not valid UTF-8 (byte {offset} of the file) (included from {}:{line})",
                    file.display()
                ),
            },
            other => other,
        })?;
        stack.push(canonical);
        // Errors inside the included file name that file (as joined to the root) and its line.
        // The chain of includes is appended so the message also names the issue file.
        self.expand(&target, &text, 1, stack, out, None)
            .map_err(|e| match e {
                ComposeError::Shortcode { location, message } => ComposeError::Shortcode {
                    location,
                    message: format!("{message} (included from {}:{line})", file.display()),
                },
                other => other,
            })?;
        stack.pop();
        if out.len() > MAX_EXPANDED_BYTES {
            return Err(too_large());
        }
        Ok(())
    }
}

fn only_arg(call: &Call<'_>, key: &str, required: bool) -> Result<Option<String>, String> {
    let mut value = None;
    for (k, v) in &call.args {
        if *k == key && value.is_none() {
            value = Some(v.clone());
        } else {
            return Err(format!("bad argument `{k}` for shortcode `{}`", call.name));
        }
    }
    if required && value.is_none() {
        return Err(format!(
            "shortcode `{}` needs the argument `{key}=\"...\"`",
            call.name
        ));
    }
    Ok(value)
}

fn no_args(call: &Call<'_>) -> Result<(), String> {
    match call.args.first() {
        Some((k, _)) => Err(format!(
            "bad argument `{k}`: shortcode `{}` takes none",
            call.name
        )),
        None => Ok(()),
    }
}

/// Byte ranges of code spans and code blocks, where shortcodes are plain text.
fn code_ranges(text: &str) -> Vec<Range<usize>> {
    let mut ranges = Vec::new();
    for (event, range) in Parser::new_ext(text, crate::markdown::options()).into_offset_iter() {
        match event {
            Event::Code(_) | Event::Start(Tag::CodeBlock(_)) => ranges.push(range),
            _ => {}
        }
    }
    ranges
}

/// Finds every shortcode call outside code.
fn find_calls<'t>(
    file: &Path,
    text: &'t str,
    first_line: usize,
) -> Result<Vec<Call<'t>>, ComposeError> {
    let mut calls = Vec::new();
    if !text.contains("{{") {
        return Ok(calls);
    }
    let code = code_ranges(text);
    let mut from = 0;
    while let Some(found) = text[from..].find("{{") {
        let start = from + found;
        from = start + 2;
        if code.iter().any(|r| r.contains(&start)) {
            continue;
        }
        match parse_call(text, start) {
            Ok(Some(call)) => {
                from = call.range.end;
                calls.push(call);
            }
            Ok(None) => {}
            Err(msg) => {
                return Err(ComposeError::shortcode(
                    file,
                    first_line + line_of(text, start) - 1,
                    msg,
                ));
            }
        }
    }
    Ok(calls)
}

/// Parses `{{ name(args) }}` at `start`. `Ok(None)` when this `{{` is not a shortcode call.
fn parse_call(text: &str, start: usize) -> Result<Option<Call<'_>>, String> {
    let b = text.as_bytes();
    let mut i = skip_ws(b, start + 2);
    let name_start = i;
    while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
        i += 1;
    }
    let name = &text[name_start..i];
    if name.is_empty() || b[name_start].is_ascii_digit() {
        return Ok(None);
    }
    i = skip_ws(b, i);
    if b.get(i) != Some(&b'(') {
        return Ok(None);
    }
    i += 1;
    let bad = |what: &str| format!("bad arguments in shortcode `{name}`: {what}");
    let mut args = Vec::new();
    loop {
        i = skip_ws(b, i);
        match b.get(i) {
            None => return Err(bad("no closing `)`")),
            Some(b')') => {
                i += 1;
                break;
            }
            _ => {}
        }
        let key_start = i;
        while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
            i += 1;
        }
        let key = &text[key_start..i];
        if key.is_empty() {
            return Err(bad("expected `key=value`"));
        }
        i = skip_ws(b, i);
        if b.get(i) != Some(&b'=') {
            return Err(bad(&format!("expected `=` after `{key}`")));
        }
        i = skip_ws(b, i + 1);
        let value = match b.get(i) {
            Some(&q @ (b'"' | b'\'')) => {
                let mut value = String::new();
                let mut j = i + 1;
                loop {
                    match text[j..].chars().next() {
                        None => return Err(bad(&format!("unterminated string for `{key}`"))),
                        Some('\\') if q == b'"' => {
                            let escaped = text[j + 1..]
                                .chars()
                                .next()
                                .ok_or_else(|| bad("dangling `\\`"))?;
                            value.push(escaped);
                            j += 1 + escaped.len_utf8();
                        }
                        Some(c) if c as u32 == q as u32 => break,
                        Some(c) => {
                            value.push(c);
                            j += c.len_utf8();
                        }
                    }
                }
                i = j + 1;
                value
            }
            _ => {
                let v_start = i;
                while i < b.len() && !b[i].is_ascii_whitespace() && b[i] != b',' && b[i] != b')' {
                    i += 1;
                }
                if v_start == i {
                    return Err(bad(&format!("no value for `{key}`")));
                }
                text[v_start..i].to_string()
            }
        };
        args.push((key, value));
        i = skip_ws(b, i);
        match b.get(i) {
            Some(b',') => i += 1,
            Some(b')') => {}
            _ => return Err(bad("expected `,` or `)`")),
        }
    }
    i = skip_ws(b, i);
    if !text[i..].starts_with("}}") {
        return Err(format!("shortcode `{name}` is not closed with `}}}}`"));
    }
    Ok(Some(Call {
        range: start..i + 2,
        name,
        args,
    }))
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && b[i].is_ascii_whitespace() {
        i += 1;
    }
    i
}
