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
//! `mj-include` paths are resolved by mrml's local loader rooted at the
//! layout's folder, which refuses anything outside it. Included partials are
//! static MJML: placeholders are only filled in the layout file itself (the
//! per-recipient markers, e.g. `%%lp-unsubscribe-url%%`, work anywhere).

use std::path::{Path, PathBuf};

use mrml::prelude::parser::ParserOptions;
use mrml::prelude::parser::local_loader::LocalIncludeLoader;
use mrml::prelude::parser::noop_loader::NoopIncludeLoader;
use mrml::prelude::render::RenderOptions;

use crate::error::{ComposeError, line_of};
use crate::language::Language;
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
    /// Where `mj-include` resolves; `None` for the built-in layout, which
    /// includes nothing.
    folder: Option<PathBuf>,
}

impl Layout {
    /// The built-in default layout.
    pub(crate) fn built_in() -> Layout {
        Layout {
            path: PathBuf::from("(built-in default layout)"),
            source: BUILT_IN.to_string(),
            folder: None,
        }
    }

    /// Reads the layout and checks that it fills and compiles.
    pub(crate) fn load(path: &Path) -> Result<Layout, ComposeError> {
        let source = std::fs::read_to_string(path).map_err(|e| ComposeError::io(path, e))?;
        let folder = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let folder = folder
            .canonicalize()
            .map_err(|e| ComposeError::io(folder, e))?;
        let layout = Layout {
            path: path.to_path_buf(),
            source,
            folder: Some(folder),
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
            include_loader: match &self.folder {
                Some(folder) => Box::new(LocalIncludeLoader::new(folder.clone())),
                None => Box::new(NoopIncludeLoader),
            },
        };
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
    }
}
