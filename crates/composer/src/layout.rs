//! The MJML layout: reading it once, filling its `{{ placeholder }}`s, and
//! compiling the filled document to HTML with mrml.
//!
//! Placeholders (written `{{ name }}` in the layout):
//!
//! | placeholder | value |
//! |---|---|
//! | `content` | the issue's HTML (inserted as is) |
//! | `title`, `subject`, `preheader` | from the front matter (escaped) |
//! | `newsletter_name`, `postal_address` | from the settings (escaped; the address keeps its line breaks) |
//! | `issue_url` | the issue's web address (escaped) |
//! | `unsubscribe_url`, `subscriber_email`, `subscriber_name` | per-recipient markers, see [`crate::personalize`] |
//!
//! A fixed set of values does not need a template engine, and a hand-written
//! filler can report an unknown placeholder with its line.
//!
//! `mj-include` paths resolve in the layout's folder, as mrml's local
//! loader resolves them, and may not leave it. The layout and its
//! partials are read once, when the layout is loaded (a missing or escaping
//! include, a cycle, bad UTF-8 or nesting past the limit is an error at the
//! file and line that names it), and mrml is handed the partials from
//! memory. Included partials are static MJML: placeholders are only filled
//! in the layout file itself (the per-recipient markers, e.g.
//! `%%lp-unsubscribe-url%%`, work anywhere).

use std::path::{Path, PathBuf};

use std::collections::HashMap;

use mrml::prelude::parser::ParserOptions;
use mrml::prelude::parser::memory_loader::MemoryIncludeLoader;
use mrml::prelude::render::RenderOptions;

use crate::error::{ComposeError, Location, line_of, read_limited};
use crate::html::{self, Token};
use crate::language::Language;
use crate::limits::{
    MAX_LAYOUT_BYTES, MAX_LAYOUT_DEPTH, MAX_LAYOUT_INCLUDE_DEPTH, Nesting, bad_conditional_comment,
};
use crate::personalize::{escape_html, marker};

/// The values a layout is filled with. All but `content` are plain text.
pub(crate) struct Values<'a> {
    pub newsletter_name: &'a str,
    pub title: &'a str,
    pub subject: &'a str,
    pub preheader: &'a str,
    pub issue_url: &'a str,
    pub postal_address: &'a str,
    pub content: &'a str,
}

/// The default layout, built into the binary: an installed `letterpress`
/// composes with it wherever it runs, and `content.template` names a file
/// only to replace it.
const BUILT_IN: &str = include_str!("../../../templates/default.mjml");

#[derive(Debug)]
pub(crate) struct Layout {
    /// The file, or `(built-in default layout)`, for messages.
    pub path: PathBuf,
    source: String,
    /// The `mj-include` partials, read once with the layout and keyed by
    /// the path as the layout writes it (which is what mrml asks for).
    /// The built-in layout includes nothing.
    partials: HashMap<String, String>,
}

impl Layout {
    /// The built-in default layout.
    pub(crate) fn built_in() -> Layout {
        Layout {
            path: PathBuf::from("(built-in default layout)"),
            source: BUILT_IN.to_string(),
            partials: HashMap::new(),
        }
    }

    /// Reads the layout and its partials, checks their nesting, and that
    /// the layout fills and compiles.
    pub(crate) fn load(path: &Path) -> Result<Layout, ComposeError> {
        let source = read_limited(path, MAX_LAYOUT_BYTES)?;
        let folder = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let folder = folder
            .canonicalize()
            .map_err(|e| ComposeError::io(folder, e))?;
        let mut partials = HashMap::new();
        let mut scan = Scan {
            folder: &folder,
            partials: &mut partials,
            chain: vec![path.canonicalize().unwrap_or_else(|_| path.to_path_buf())],
        };
        scan.file(path, &source, &mut Nesting::new(0, MAX_LAYOUT_DEPTH), true)?;
        let layout = Layout {
            path: path.to_path_buf(),
            source,
            partials,
        };
        let sample = layout.fill(&Values {
            newsletter_name: "Newsletter",
            title: "Title",
            subject: "Subject",
            preheader: "Preheader",
            issue_url: "https://example.com/issue/",
            postal_address: "Street 1",
            content: "<p>Content</p>",
        })?;
        layout.compile(&sample, &Language::default()).map_err(|e| {
            ComposeError::template(path, None, format!("mrml rejects the layout: {e}"))
        })?;
        Ok(layout)
    }

    /// Replaces the placeholders.
    pub(crate) fn fill(&self, v: &Values<'_>) -> Result<String, ComposeError> {
        let src = &self.source;
        let mut out = String::with_capacity(src.len() + v.content.len() + 512);
        let mut last = 0;
        while let Some(found) = src[last..].find("{{") {
            let start = last + found;
            let Some(len) = src[start..].find("}}") else {
                return Err(ComposeError::template(
                    &self.path,
                    Some(line_of(src, start)),
                    "unclosed `{{`",
                ));
            };
            let name = src[start + 2..start + len].trim();
            out.push_str(&src[last..start]);
            match name {
                "content" => out.push_str(v.content),
                "title" => out.push_str(&escape_html(v.title)),
                "subject" => out.push_str(&escape_html(v.subject)),
                "preheader" => out.push_str(&escape_html(v.preheader)),
                "newsletter_name" => out.push_str(&escape_html(v.newsletter_name)),
                "issue_url" => out.push_str(&escape_html(v.issue_url)),
                "postal_address" => {
                    let lines: Vec<String> =
                        v.postal_address.trim().lines().map(escape_html).collect();
                    out.push_str(&lines.join("<br />"));
                }
                "unsubscribe_url" => out.push_str(marker::UNSUBSCRIBE_URL),
                "subscriber_email" => out.push_str(marker::EMAIL),
                "subscriber_name" => out.push_str(marker::NAME),
                other => {
                    return Err(ComposeError::template(
                        &self.path,
                        Some(line_of(src, start)),
                        format!(
                            "unknown placeholder `{{{{ {other} }}}}` (known: content, title, subject, preheader, \
                             newsletter_name, issue_url, postal_address, unsubscribe_url, subscriber_email, subscriber_name)"
                        ),
                    ));
                }
            }
            last = start + len + 2;
        }
        out.push_str(&src[last..]);
        Ok(out)
    }

    /// Compiles a filled MJML document to HTML (mrml parse + render).
    ///
    /// `language` sets `lang` and `dir` unless the layout's `<mjml>` sets
    /// them itself (mrml's default, `und`, tells a screen reader nothing).
    /// No web font is loaded unless the layout asks for one with
    /// `mj-font`: mrml's default font table would otherwise link Google
    /// Fonts for any family it knows (Roboto, Open Sans, ...) that the font
    /// stack names, which tells Google who opened which issue.
    pub(crate) fn compile(&self, mjml: &str, language: &Language) -> Result<String, String> {
        let options = ParserOptions {
            include_loader: Box::new(MemoryIncludeLoader::from(self.partials.clone())),
        };
        // mrml's tokenizer panics on some malformed input (the fuzz target
        // found conditional comments; the issue's are checked beforehand).
        // A panic here is a bug of theirs, reported as this input's error
        // rather than taking the caller down.
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let mut parsed = mrml::parse_with_options(mjml, &options).map_err(|e| e.to_string())?;
            let attributes = &mut parsed.element.attributes;
            attributes
                .lang
                .get_or_insert_with(|| language.as_str().to_string());
            attributes
                .dir
                .get_or_insert_with(|| language.dir().to_string());
            let render = RenderOptions {
                fonts: Default::default(),
                ..RenderOptions::default()
            };
            parsed.element.render(&render).map_err(|e| e.to_string())
        }))
        .unwrap_or_else(|panic| {
            let why = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            Err(format!("mrml failed on this input ({why})"))
        })
    }
}

/// Walks the layout and, through its `mj-include`s, every partial: counts
/// the nesting and reads each partial once, so that a missing or escaping
/// include, a cycle or bad UTF-8 is reported at the file and line that
/// names it, before mrml (which knows no lines) sees any of it.
struct Scan<'a> {
    /// Canonical layout folder: includes resolve in it, as mrml's local
    /// loader resolves them, and may not leave it.
    folder: &'a Path,
    partials: &'a mut HashMap<String, String>,
    /// Canonical files being scanned, outermost first.
    chain: Vec<PathBuf>,
}

impl Scan<'_> {
    /// `mjml` is false for `type="html"` partials (HTML, no includes).
    fn file(
        &mut self,
        file: &Path,
        source: &str,
        nesting: &mut Nesting,
        mjml: bool,
    ) -> Result<(), ComposeError> {
        if let Some(offset) = bad_conditional_comment(source) {
            return Err(ComposeError::template(
                file,
                Some(line_of(source, offset)),
                "unfinished conditional comment: write `<!--[if mso]>` ... `<![endif]-->` in full",
            ));
        }
        for (token, range) in html::tokenize(source) {
            let Token::Tag(tag) = token else { continue };
            let line = line_of(source, range.start);
            nesting
                .tag(&tag.name, tag.closing, tag.self_closing)
                .map_err(|()| ComposeError::TooDeep {
                    location: Location::new(file, Some(line)),
                    limit: MAX_LAYOUT_DEPTH,
                    what: "MJML and HTML elements of the layout and its partials".into(),
                })?;
            if !mjml || tag.closing || tag.name != "mj-include" {
                continue;
            }
            // Without a path mrml reports the tag itself.
            let Some(written) = tag
                .attr("path")
                .map(|p| html::decode_entities(p).into_owned())
            else {
                continue;
            };
            let kind = tag.attr("type").unwrap_or("mjml").to_ascii_lowercase();
            self.include(file, line, &written, &kind, nesting)?;
        }
        Ok(())
    }

    fn include(
        &mut self,
        file: &Path,
        line: usize,
        written: &str,
        kind: &str,
        nesting: &mut Nesting,
    ) -> Result<(), ComposeError> {
        let bad = |message: String| ComposeError::template(file, Some(line), message);
        let relative = written.trim_start_matches("file:///");
        let target = self.folder.join(relative);
        let canonical = target.canonicalize().map_err(|e| {
            bad(format!(
                "mj-include: cannot open `{written}` (looked for {}): {e}",
                target.display()
            ))
        })?;
        if !canonical.starts_with(self.folder) {
            return Err(bad(format!(
                "mj-include: `{written}` is outside the layout's folder {}",
                self.folder.display()
            )));
        }
        if self.chain.contains(&canonical) {
            let chain: Vec<String> = self
                .chain
                .iter()
                .chain(std::iter::once(&canonical))
                .map(|p| p.display().to_string())
                .collect();
            return Err(bad(format!("mj-include cycle: {}", chain.join(" -> "))));
        }
        if self.chain.len() > MAX_LAYOUT_INCLUDE_DEPTH {
            return Err(bad(format!(
                "mj-include: partials nest more than {MAX_LAYOUT_INCLUDE_DEPTH} deep"
            )));
        }
        let text = read_limited(&target, MAX_LAYOUT_BYTES)?;
        if kind != "css" {
            self.chain.push(canonical);
            // mrml puts the partial where its mj-include stands.
            let mut inner = Nesting::new(nesting.depth(), MAX_LAYOUT_DEPTH);
            self.file(&target, &text, &mut inner, kind == "mjml")?;
            self.chain.pop();
        }
        self.partials.insert(written.to_string(), text);
        Ok(())
    }
}
