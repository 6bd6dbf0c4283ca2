//! letterpress-composer: turns a newsletter issue written in Markdown (the same
//! file a Zola or Hugo site publishes) into a responsive HTML email compiled by
//! mrml from an MJML layout, plus a plain-text twin, both with per-recipient
//! markers that [`Personalizable`] fills in with one pass of string pushes.
//!
//! The crate is pure: it reads files, and nothing else (no database, no network).
//!
//! Pipeline ([`Composer::compose_file`]), one module per step: `front_matter`
//! (TOML `+++` or YAML `---`) → `shortcodes` → `markdown` (pulldown-cmark events,
//! addresses made absolute by `links`, warnings from `lint`) → `layout` (the MJML
//! layout filled and compiled once by mrml) and `text` (the plain-text part from the
//! same events) → [`personalize`].
//!
//! # Shortcodes (Zola syntax, in the issue's Markdown)
//!
//! - `{{ include_md(path="snippets/x.md") }}`: inserts a Markdown file relative to
//!   [`ComposerSettings::content_root`], recursively; paths outside the root and
//!   include cycles are errors.
//! - `{{ subscriber_name() }}`, `{{ subscriber_name(fallback="there") }}`,
//!   `{{ subscriber_email() }}`, `{{ unsubscribe_url() }}`: per-recipient values, written
//!   as the markers documented in [`personalize`].
//!
//! Shortcodes inside code spans and code blocks are left as text.
//!
//! # Limits
//!
//! An issue nests at most 100 elements (block quotes, lists, emphasis, raw
//! HTML together), includes at most 100 files (repeats counted) and expands
//! to at most 2 MB of Markdown; a layout and its partials nest at most 100
//! elements. Past a limit composing is an error at the file and line that
//! crossed it ([`ComposeError::TooDeep`], or the `include_md` shortcode), never
//! a stack overflow. A file that is not UTF-8 is an error at the line of its
//! first bad byte ([`ComposeError::NotUtf8`]). The reasons for each number are
//! in `limits.rs`.
//!
//! # Layout placeholders
//!
//! The MJML layout (the built-in default is `templates/default.mjml`) uses `{{ content }}` (the issue's HTML),
//! `{{ title }}`, `{{ subject }}`, `{{ preheader }}`, `{{ newsletter_name }}`,
//! `{{ issue_url }}`, `{{ postal_address }}` (all escaped), and `{{ unsubscribe_url }}`,
//! `{{ subscriber_email }}`, `{{ subscriber_name }}` (markers). An unknown placeholder
//! is an error naming the layout file and line. `mj-include` resolves only inside the
//! layout's folder; included partials are static MJML (no placeholders).
//!
//! The default layout loads nothing remote (no web fonts: a system font
//! stack) and hides its preheader with `display:none` / `mso-hide:all`
//! followed by zero-width spacers, not with white or tiny text, which spam
//! filters score (SpamAssassin's HTML_FONT_LOW_CONTRAST). `lang` and `dir`
//! come from [`Newsletter::language`] or the issue's front matter.

#![warn(missing_docs)]

mod addresses;
mod error;
mod front_matter;
mod html;
mod language;
mod layout;
mod limits;
mod links;
mod lint;
mod markdown;
pub mod personalize;
mod sendable;
mod shortcodes;
mod text;

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use url::Url;

pub use addresses::{Address, AddressKind};
pub use error::{ComposeError, Location};
pub use front_matter::FrontMatter;
pub use language::Language;
use lint::HTML_SIZE_WARNING;
pub use lint::{Lint, LintKind};
pub use personalize::{Part, Personalizable, Recipient, Slot};
pub use sendable::{SendableIssue, StoredIssueError};

/// The newsletter's identity, shown in the layout and the text footer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Newsletter {
    /// Name shown in the header and footer.
    pub name: String,
    /// Postal address required in the footer of commercial email (may span lines).
    pub postal_address: String,
    /// The language issues are written in (`lang` of the HTML), unless an
    /// issue's front matter names another.
    pub language: Language,
}

/// What the composer needs to know about the site and the newsletter.
#[derive(Debug, Clone)]
pub struct ComposerSettings {
    /// Site root (Zola): `include_md` paths are relative to it and may not leave it.
    pub content_root: PathBuf,
    /// Web address of an issue with `{slug}` in it, e.g.
    /// `https://rust-trends.com/newsletter/{slug}/`. Relative links resolve against it.
    pub issue_url: String,
    /// MJML layout, or `None` for the built-in default layout;
    /// `mj-include` resolves only inside the layout's folder.
    pub template: Option<PathBuf>,
    /// Name and postal address.
    pub newsletter: Newsletter,
}

/// Composes issues. Holds the settings and the layout, read once.
#[derive(Debug)]
pub struct Composer {
    settings: ComposerSettings,
    root: PathBuf,
    layout: layout::Layout,
}

/// The front matter and slug of an issue, without rendering it.
#[derive(Debug, Clone, PartialEq)]
pub struct IssueHeader {
    /// The issue's slug (see [`SendableIssue::slug`]).
    pub slug: String,
    /// The parsed front matter.
    pub front_matter: FrontMatter,
}

/// An issue as its author sees it: what was read and what was made of it.
/// [`ComposedIssue::issue`] is the part a sender needs.
#[derive(Debug, Clone)]
pub struct ComposedIssue {
    /// The parsed front matter.
    pub front_matter: FrontMatter,
    /// The filled MJML document, with the per-recipient markers still in it.
    pub mjml: String,
    /// Problems that do not stop the issue from being sent.
    pub warnings: Vec<Lint>,
    /// What every message of the issue is made from.
    pub issue: SendableIssue,
}

impl ComposedIssue {
    /// The HTML and text parts for one recipient.
    pub fn personalize(&self, r: &Recipient<'_>) -> (String, String) {
        self.issue.personalize(r)
    }
}

/// Slugifies as Zola does: `"Why Rust Trends"` → `"why-rust-trends"`.
pub fn slugify(s: &str) -> String {
    slug::slugify(s)
}

/// Reads only the front matter of an issue and works out its slug (used by the
/// scheduler to scan a folder cheaply: no shortcodes, Markdown or MJML).
pub fn read_issue_header(path: &Path) -> Result<IssueHeader, ComposeError> {
    let src = read_source(path)?;
    let split = front_matter::split(path, &src)?;
    let front_matter = front_matter::parse(path, &src, &split)?;
    Ok(IssueHeader {
        slug: issue_slug(path, &front_matter),
        front_matter,
    })
}

fn read_source(path: &Path) -> Result<String, ComposeError> {
    Ok(strip_bom(error::read_limited(
        path,
        limits::MAX_EXPANDED_BYTES,
    )?))
}

/// A byte-order mark would hide the opening `+++`.
fn strip_bom(src: String) -> String {
    match src.strip_prefix('\u{feff}') {
        Some(rest) => rest.to_string(),
        None => src,
    }
}

fn issue_slug(path: &Path, fm: &FrontMatter) -> String {
    match fm.slug.as_deref().map(slugify).filter(|s| !s.is_empty()) {
        Some(slug) => slug,
        None => slugify(
            &path
                .file_stem()
                .map(|s| s.to_string_lossy())
                .unwrap_or_default(),
        ),
    }
}

impl Composer {
    /// Reads the layout (`settings.template`) and checks that it compiles.
    pub fn new(settings: ComposerSettings) -> Result<Composer, ComposeError> {
        let layout = match &settings.template {
            Some(path) => layout::Layout::load(path)?,
            None => layout::Layout::built_in(),
        };
        // A missing root only matters once an issue includes something; the include then
        // reports it, so the canonical form is best-effort here.
        let root = settings
            .content_root
            .canonicalize()
            .unwrap_or_else(|_| settings.content_root.clone());
        Ok(Composer {
            settings,
            root,
            layout,
        })
    }

    /// The settings this composer was made with.
    pub fn settings(&self) -> &ComposerSettings {
        &self.settings
    }

    /// The `http:`/`https:` links and images of an issue file (after its
    /// includes, made absolute), each with its line, for a link check.
    pub fn addresses(&self, path: &Path) -> Result<Vec<Address>, ComposeError> {
        let src = read_source(path)?;
        let split = front_matter::split(path, &src)?;
        let front_matter = front_matter::parse(path, &src, &split)?;
        let base = self.issue_base(&issue_slug(path, &front_matter))?;
        let expander = shortcodes::Expander {
            root: &self.root,
            includes: std::cell::Cell::new(0),
        };
        let (body, map) = expander.expand_issue(path, &src, split.body_offset)?;
        Ok(addresses::collect(&body, &base, &map))
    }

    /// The issue's web address, which relative addresses resolve against.
    fn issue_base(&self, slug: &str) -> Result<Url, ComposeError> {
        let issue_url = self.settings.issue_url.replace("{slug}", slug);
        Url::parse(&issue_url).map_err(|e| ComposeError::Settings {
            key: "newsletter.issue_url",
            message: format!("`{issue_url}` is not an absolute URL: {e}"),
        })
    }

    /// Composes one issue file: front matter, shortcodes, Markdown, layout, HTML and text.
    pub fn compose_file(&self, path: &Path) -> Result<ComposedIssue, ComposeError> {
        let span = tracing::info_span!("compose", file = %path.display());
        let _entered = span.enter();
        let src = read_source(path)?;
        self.compose_source(path, src)
    }

    /// Composes an issue from its bytes, as if read from `path` (which
    /// names it in messages and in its slug; its includes are read as
    /// usual). For callers that hold the file already, and the fuzz target.
    pub fn compose_bytes(
        &self,
        path: &Path,
        bytes: Vec<u8>,
    ) -> Result<ComposedIssue, ComposeError> {
        if bytes.len() > limits::MAX_EXPANDED_BYTES {
            return Err(ComposeError::Io {
                location: Location::new(path, None),
                source: std::io::Error::other("the issue is larger than the composer accepts"),
            });
        }
        self.compose_source(path, strip_bom(error::decode(path, bytes)?))
    }

    fn compose_source(&self, path: &Path, src: String) -> Result<ComposedIssue, ComposeError> {
        let split = front_matter::split(path, &src)?;
        let front_matter = front_matter::parse(path, &src, &split)?;
        let slug = issue_slug(path, &front_matter);
        let base = self.issue_base(&slug)?;

        let expander = shortcodes::Expander {
            root: &self.root,
            includes: std::cell::Cell::new(0),
        };
        let (body, map) = expander.expand_issue(path, &src, split.body_offset)?;

        let mut hasher = Sha256::new();
        hasher.update(&src.as_bytes()[..split.body_offset]);
        hasher.update(body.as_bytes());
        let content_hash = hex::encode(hasher.finalize());

        let mut warnings = Vec::new();
        let events = markdown::events(&body, &base, &map, &mut warnings).map_err(|e| match e {
            markdown::Refused::TooDeep { line } => ComposeError::TooDeep {
                location: Location::new(path, Some(line)),
                limit: limits::MAX_CONTENT_DEPTH,
                what: "elements (block quotes, lists, emphasis, links and raw HTML tags together)"
                    .into(),
            },
            markdown::Refused::ConditionalComment { line } => ComposeError::Html {
                location: Location::new(path, Some(line)),
                message: "unfinished conditional comment: write `<!--[if mso]>` ... \
                          `<![endif]-->` in full"
                    .into(),
            },
        })?;
        let content = markdown::to_html(&events, body.len() * 3 / 2);

        let subject = front_matter
            .subject
            .clone()
            .unwrap_or_else(|| front_matter.title.clone());
        let preheader = front_matter
            .preheader
            .clone()
            .or_else(|| front_matter.description.clone())
            .unwrap_or_default();
        let newsletter = &self.settings.newsletter;
        let mjml = self.layout.fill(&layout::Values {
            newsletter_name: &newsletter.name,
            title: &front_matter.title,
            subject: &subject,
            preheader: &preheader,
            issue_url: base.as_str(),
            postal_address: &newsletter.postal_address,
            content: &content,
        })?;
        let language = front_matter
            .language
            .as_ref()
            .unwrap_or(&newsletter.language);
        let html = self.layout.compile(&mjml, language).map_err(|e| {
            ComposeError::template(
                path,
                None,
                format!(
                    "mrml rejects the layout {} filled with this issue: {e}",
                    self.layout.path.display()
                ),
            )
        })?;
        for href in lint::remote_stylesheets(&html) {
            warnings.push(Lint {
                kind: LintKind::RemoteStylesheet,
                message: format!(
                    "the HTML loads a remote stylesheet, {href}: every open tells that host \
                     who read the issue (a web font? the layout's mj-font)"
                ),
                line: None,
            });
        }
        if html.len() > HTML_SIZE_WARNING {
            warnings.push(Lint {
                kind: LintKind::HtmlTooLarge,
                message: format!(
                    "the HTML is {} KB; Gmail clips messages over 102 KB (warning from {} KB)",
                    html.len() / 1024,
                    HTML_SIZE_WARNING / 1024
                ),
                line: None,
            });
        }
        let text = text::render(
            &events,
            &text::TextFrame {
                title: &front_matter.title,
                newsletter_name: &newsletter.name,
                issue_url: base.as_str(),
                postal_address: &newsletter.postal_address,
            },
        );
        tracing::debug!(
            html_bytes = html.len(),
            text_bytes = text.len(),
            warnings = warnings.len(),
            "composed"
        );
        Ok(ComposedIssue {
            issue: SendableIssue {
                slug,
                title: front_matter.title.clone(),
                subject,
                preheader,
                issue_url: base.into(),
                content_hash,
                html: Personalizable::new(html, personalize::Escape::Html),
                text: Personalizable::new(text, personalize::Escape::Text),
            },
            front_matter,
            mjml,
            warnings,
        })
    }
}
