//! Behaviour on small hand-written fixtures: front matter, shortcodes, links,
//! Markdown features, lints, errors and personalisation.

mod common;

use std::path::PathBuf;

use letterpress_composer::{
    ComposeError, Composer, ComposerSettings, LintKind, Newsletter, Recipient, read_issue_header,
    slugify,
};

fn site() -> PathBuf {
    common::fixtures().join("site")
}

fn issue(name: &str) -> PathBuf {
    site().join("issues").join(name)
}

fn composer() -> Composer {
    common::composer(&site(), &common::default_template())
}

/// 1-based line of the first line of `file` containing `needle`.
fn line_containing(file: &PathBuf, needle: &str) -> usize {
    std::fs::read_to_string(file)
        .unwrap()
        .lines()
        .position(|l| l.contains(needle))
        .expect(needle)
        + 1
}

const READER: Recipient<'static> = Recipient {
    email: "reader@example.com",
    name: Some("Ada"),
    unsubscribe_url: "https://example.com/u/TOKEN",
};

#[test]
fn toml_front_matter_and_slug() {
    let composed = composer().compose_file(&issue("toml.md")).unwrap();
    let fm = &composed.front_matter;
    assert_eq!(fm.title, "Fixture: TOML & Friends");
    assert_eq!(fm.date.as_deref(), Some("2024-05-01"));
    assert_eq!(composed.issue.slug, "why-rust-trends");
    assert_eq!(composed.issue.subject, "Fixture: TOML & Friends");
    assert_eq!(composed.issue.preheader, "A description used as preheader.");
    assert_eq!(
        composed.issue.issue_url,
        "https://rust-trends.com/newsletter/why-rust-trends/"
    );
    assert_eq!(
        fm.send_at.unwrap().to_rfc3339(),
        "2024-05-02T09:30:00+00:00"
    );
    assert!(!fm.draft);
    assert_eq!(fm.extra["sponsor"], "Acme");
    assert_eq!(fm.extra["toc_not_generate"], true);
    assert_eq!(composed.issue.content_hash.len(), 64);
    assert!(
        composed
            .issue
            .content_hash
            .chars()
            .all(|c| c.is_ascii_hexdigit())
    );

    let header = read_issue_header(&issue("toml.md")).unwrap();
    assert_eq!(header.slug, "why-rust-trends");
    assert_eq!(&header.front_matter, fm);
}

#[test]
fn yaml_front_matter_and_thematic_break() {
    let composed = composer().compose_file(&issue("yaml.md")).unwrap();
    let fm = &composed.front_matter;
    assert_eq!(fm.title, "Fixture: YAML");
    assert_eq!(composed.issue.subject, "Custom subject");
    assert_eq!(composed.issue.preheader, "Custom preheader");
    assert!(fm.draft);
    assert_eq!(
        fm.send_at.unwrap().to_rfc3339(),
        "2024-06-01T08:00:00+00:00"
    );
    assert_eq!(fm.extra["hero"], true);
    assert_eq!(composed.issue.slug, "yaml");
    let html = composed.issue.html.as_str();
    assert!(html.contains("Body after YAML front matter."));
    assert!(
        html.contains("<hr"),
        "the `---` in the body is a thematic break"
    );
    assert!(html.contains("Text after a thematic break."));
    assert!(html.contains("Custom preheader"), "preheader in mj-preview");
}

#[test]
fn slug_from_file_name_and_date_only_send_at() {
    let header = read_issue_header(&issue("no-slug_File.md")).unwrap();
    assert_eq!(header.slug, "no-slug-file");
    assert_eq!(
        header.front_matter.send_at.unwrap().to_rfc3339(),
        "2024-06-01T00:00:00+00:00"
    );
    assert_eq!(slugify("Why Rust Trends"), "why-rust-trends");
}

#[test]
fn includes_links_and_markdown_features_in_html() {
    let composed = composer().compose_file(&issue("toml.md")).unwrap();
    let html = composed.issue.html.as_str();
    let urls = common::attribute_urls(html);
    for expected in [
        "https://rust-trends.com/newsletter/1/page/",
        "https://rust-trends.com/signup/",
        "https://rust-trends.com/newsletter/1/ferris.png",
        "https://rust-trends.com/newsletter/why-rust-trends/images/no-alt.webp",
        "https://example.com/?a=1&b=2",
        "https://rust-trends.com/newsletter/2/raw.webp",
        "https://rust-trends.com/raw/relative/",
        "https://rust-trends.com/newsletter/docs/inner/",
        "mailto:hi@example.com",
        "#top",
        "https://serde.rs/",
    ] {
        assert!(
            urls.iter().any(|u| u == expected),
            "{expected} not in {urls:?}"
        );
    }
    assert!(
        html.contains("https://example.com/?a=1&amp;b=2"),
        "& escaped in the attribute"
    );
    assert!(
        html.contains("target=\"_blank\""),
        "raw HTML attributes kept"
    );
    assert!(
        html.contains("Outer snippet before.") && html.contains("Inner snippet with"),
        "nested include"
    );
    assert!(html.contains("Outer snippet after."));
    assert!(
        html.contains("<code>{{ include_md(path="),
        "shortcode in a code span left alone"
    );
    assert!(
        html.contains("unknown_in_fence()"),
        "shortcode in a fenced block left alone"
    );
    assert!(
        html.contains("<table") && html.contains("<td>tokio</td>"),
        "table"
    );
    assert!(html.contains("footnote-definition"), "footnotes");
    assert!(html.contains("<del>struck</del>"), "strikethrough");
    assert!(html.contains("<meta name=\"color-scheme\" content=\"light dark\""));
    assert!(
        html.contains("Fixture Weekly"),
        "newsletter name in the header"
    );
    assert!(
        html.contains("Fixture: TOML &amp; Friends"),
        "title escaped"
    );
    assert!(
        html.contains("Fixture Street 1<br"),
        "postal address keeps its lines"
    );
    assert!(
        html.contains("%%lp-unsubscribe-url%%"),
        "unpersonalised HTML keeps the marker"
    );
    assert!(composed.mjml.contains("<mjml>") && composed.mjml.contains("Inner snippet with"));
}

#[test]
fn text_part() {
    let composed = composer().compose_file(&issue("toml.md")).unwrap();
    let (_, text) = composed.personalize(&READER);
    assert!(
        common::find_html_tag(&text).is_none(),
        "no HTML in:\n{text}"
    );
    assert!(
        text.starts_with("Fixture: TOML & Friends\n======================="),
        "{text}"
    );
    assert!(
        text.contains("Links and images\n----------------"),
        "h2 underlined:\n{text}"
    );
    assert!(text.contains("Hello Ada, welcome!"));
    assert!(
        text.contains("{{ include_md(path=\"nope.md\") }}"),
        "code span kept"
    );
    assert!(
        text.contains("    {{ unknown_in_fence() }}"),
        "code block indented"
    );
    assert!(text.contains("    indented code line"));
    assert!(
        text.contains("Raw link with ampersand ["),
        "raw <a> becomes a reference"
    );
    assert!(
        text.contains("Raw image ["),
        "raw <img> becomes its alt and a reference"
    );
    assert!(text.contains("Ferris the crab ["), "image alt");
    assert!(
        text.contains("] https://example.com/?a=1&b=2\n"),
        "reference listed unescaped:\n{text}"
    );
    assert!(text.contains("] https://rust-trends.com/newsletter/1/page/\n"));
    assert!(
        text.contains("1. First\n2. Second\n   - nested"),
        "numbered and nested lists:\n{text}"
    );
    assert!(text.contains("> A quote"));
    assert!(text.contains("Crate | Stars"), "table rows");
    assert!(text.contains("[^1]"), "footnote");
    assert!(
        !text.contains("~~") && !text.contains("**"),
        "emphasis dropped"
    );
    for line in text.lines() {
        assert!(
            line.chars().count() <= 72 || !line.trim().contains(' ') || line.contains("://"),
            "line over 72 columns: {line}"
        );
    }
    // Identical addresses are listed once.
    let page_refs = text
        .lines()
        .filter(|l| l.ends_with("] https://serde.rs/"))
        .count();
    assert_eq!(page_refs, 1);
    assert!(text.contains(
        "View this issue in your browser: https://rust-trends.com/newsletter/why-rust-trends/"
    ));
    assert!(text.contains("Unsubscribe: https://example.com/u/TOKEN"));
    assert!(text.contains("Fixture Street 1\n1000 AA Testville"));
}

#[test]
fn lints_name_kind_and_line() {
    let path = issue("toml.md");
    let composed = composer().compose_file(&path).unwrap();
    let find = |kind: LintKind, needle: &str| {
        composed
            .warnings
            .iter()
            .find(|l| l.kind == kind && l.message.contains(needle))
            .unwrap_or_else(|| panic!("no {kind:?} lint about {needle}: {:?}", composed.warnings))
            .clone()
    };
    let insecure = find(LintKind::InsecureLink, "http://insecure.example.com/");
    assert_eq!(
        insecure.line,
        Some(line_containing(&path, "insecure.example.com"))
    );
    assert_eq!(
        insecure.to_string(),
        format!("line {}: {}", insecure.line.unwrap(), insecure.message)
    );
    let no_alt = find(LintKind::ImageWithoutAlt, "no-alt.webp");
    assert_eq!(no_alt.line, Some(line_containing(&path, "no-alt.webp")));
    find(LintKind::UnsupportedImageFormat, "no-alt.webp");
    let raw_webp = find(LintKind::UnsupportedImageFormat, "raw.webp");
    assert_eq!(raw_webp.line, Some(line_containing(&path, "raw.webp")));
    let empty = find(LintKind::EmptyLink, "empty address");
    assert_eq!(empty.line, Some(line_containing(&path, "[empty link]()")));
    assert!(
        !composed
            .warnings
            .iter()
            .any(|l| l.kind == LintKind::HtmlTooLarge)
    );
    assert!(
        !composed
            .warnings
            .iter()
            .any(|l| l.kind == LintKind::ImageWithoutAlt && l.message.contains("raw.webp"))
    );
}

fn error_of(name: &str) -> (ComposeError, String) {
    let err = composer().compose_file(&issue(name)).expect_err(name);
    let msg = err.to_string();
    (err, msg)
}

fn assert_error(name: &str, line: usize, needle: &str) {
    let (err, msg) = error_of(name);
    let prefix = format!("{}:{line}: ", issue(name).display());
    assert!(
        msg.starts_with(&prefix),
        "`{msg}` should start with `{prefix}`"
    );
    assert!(msg.contains(needle), "`{msg}` should mention `{needle}`");
    assert_eq!(err.location().and_then(|l| l.line), Some(line));
}

#[test]
fn front_matter_errors_name_file_and_line() {
    assert_error("err_unterminated.md", 1, "unterminated front matter");
    assert_error("err_toml.md", 3, "invalid TOML");
    assert_error("err_no_title.md", 1, "title");
    assert_error("err_send_at.md", 3, "send_at");
    let (_, msg) = error_of("err_yaml.md");
    assert!(
        msg.starts_with(&format!("{}:", issue("err_yaml.md").display())),
        "{msg}"
    );
    assert!(msg.contains("invalid YAML"), "{msg}");
    let line: usize = msg
        .split(':')
        .nth(1)
        .unwrap()
        .parse()
        .expect("a line number");
    assert!((3..=4).contains(&line), "{msg}");
    // read_issue_header reports the same.
    assert!(read_issue_header(&issue("err_no_title.md")).is_err());
}

#[test]
fn shortcode_errors_name_file_and_line() {
    assert_error("err_outside.md", 7, "outside the content root");
    assert_error("err_missing.md", 5, "snippets/missing.md");
    assert_error("err_unknown.md", 8, "unknown shortcode `foo`");
    assert_error("err_bad_arg.md", 5, "bad argument `file`");
    let (_, msg) = error_of("err_cycle.md");
    assert!(msg.contains("include cycle"), "{msg}");
    assert!(
        msg.contains(&format!(
            "included from {}:7",
            issue("err_cycle.md").display()
        )),
        "{msg}"
    );
    let (_, msg) = error_of("err_nested.md");
    assert!(
        msg.contains("bad_inner.md:3: unknown shortcode `no_such_thing`"),
        "{msg}"
    );
    assert!(
        msg.contains(&format!(
            "included from {}:5",
            issue("err_nested.md").display()
        )),
        "{msg}"
    );
}

#[test]
fn personalisation_escapes_html_and_not_text() {
    let composed = composer().compose_file(&issue("toml.md")).unwrap();
    let evil = Recipient {
        email: "a&b@example.com",
        name: Some("<script>alert(1)</script> & Co"),
        unsubscribe_url: "https://example.com/u/abc?x=1&y=2",
    };
    let (html, text) = composed.personalize(&evil);
    assert!(
        !html.contains("<script>alert"),
        "name must be escaped in HTML"
    );
    assert!(html.contains("Hello &lt;script&gt;alert(1)&lt;/script&gt; &amp; Co, welcome!"));
    assert!(text.contains("Hello <script>alert(1)</script> & Co, welcome!"));
    assert!(
        html.contains("href=\"https://example.com/u/abc?x=1&amp;y=2\""),
        "unsubscribe link in HTML"
    );
    assert!(
        text.contains("https://example.com/u/abc?x=1&y=2"),
        "unsubscribe link in text"
    );
    assert!(html.contains("a&amp;b@example.com") && text.contains("a&b@example.com"));
    assert!(!html.contains("%%lp-") && !text.contains("%%lp-"));

    let nameless = Recipient {
        email: "x@example.com",
        name: None,
        unsubscribe_url: "https://example.com/u/1",
    };
    let (html, text) = composed.personalize(&nameless);
    assert!(html.contains("Hello there, welcome!") && text.contains("Hello there, welcome!"));

    // render_into appends to what is already there.
    let mut buf = String::from("prefix");
    composed.issue.text.render_into(&READER, &mut buf);
    assert!(buf.starts_with("prefix") && buf.ends_with(&composed.issue.text.render(&READER)));
    assert!(composed.issue.html.len() > 1000 && composed.issue.text.len() > 100);
}

fn custom(template: &str) -> Result<Composer, ComposeError> {
    Composer::new(ComposerSettings {
        content_root: site(),
        issue_url: "https://example.com/{slug}/".into(),
        template: Some(common::fixtures().join("layouts").join(template)),
        newsletter: Newsletter {
            name: "Custom & Co".into(),
            postal_address: String::new(),
            language: Default::default(),
        },
    })
}

#[test]
fn custom_layouts_and_mj_include() {
    let composed = custom("custom.mjml")
        .unwrap()
        .compose_file(&issue("yaml.md"))
        .unwrap();
    // Partials are static MJML: placeholders are filled in the layout file itself.
    assert!(
        composed.issue.html.as_str().contains("Custom header for"),
        "mj-include inside the folder"
    );
    let (html, _) = composed.personalize(&READER);
    assert!(html.contains("href=\"https://example.com/u/TOKEN\""));

    let escape = custom("escape.mjml").expect_err("mj-include outside the layout folder");
    assert!(escape.to_string().contains("escape.mjml"), "{escape}");

    let unknown = custom("unknown.mjml").expect_err("unknown placeholder");
    assert!(
        unknown
            .to_string()
            .contains("unknown.mjml:3: unknown placeholder `{{ nope }}`"),
        "{unknown}"
    );

    let missing = custom("missing.mjml").expect_err("missing layout");
    assert!(missing.to_string().contains("missing.mjml"), "{missing}");
}

#[test]
fn bad_issue_url_is_a_settings_error() {
    let composer = Composer::new(ComposerSettings {
        content_root: site(),
        issue_url: "not a url/{slug}".into(),
        template: Some(common::default_template()),
        newsletter: Newsletter {
            name: "N".into(),
            postal_address: String::new(),
            language: Default::default(),
        },
    })
    .unwrap();
    let err = composer.compose_file(&issue("yaml.md")).unwrap_err();
    assert!(
        err.to_string().starts_with("newsletter.issue_url: "),
        "{err}"
    );
}

#[test]
fn stored_issue_round_trips_and_personalises_the_same() {
    let composed = composer().compose_file(&issue("toml.md")).unwrap();
    let back =
        letterpress_composer::SendableIssue::from_stored(&composed.issue.to_stored()).unwrap();
    assert_eq!(back.slug, composed.issue.slug);
    assert_eq!(back.subject, composed.issue.subject);
    assert_eq!(back.content_hash, composed.issue.content_hash);
    assert_eq!(back.personalize(&READER), composed.personalize(&READER));
    assert!(letterpress_composer::SendableIssue::from_stored("{\"version\":99}").is_err());
    assert!(letterpress_composer::SendableIssue::from_stored("not json").is_err());
}
