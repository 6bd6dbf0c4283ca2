//! Every issue of the real corpus (`../shared/corpus`, beside the checkout;
//! `LP_TEST_REQUIRE=corpus` makes its absence a failure) composes, keeps
//! every absolute link in both parts, has no HTML in its text, loads nothing
//! remote but its own links and images, says `lang="en"` and stays under 102 KB.

mod common;

use std::path::{Path, PathBuf};

use letterpress_composer::Recipient;
use letterpress_testkit::corpus;
use pulldown_cmark::{Event, Parser, Tag};

/// The issue source with `include_md` shortcodes replaced by the files (test-side, simply).
fn source_after_includes(root: &Path, path: &Path) -> String {
    let mut src = std::fs::read_to_string(path).unwrap();
    while let Some(start) = src.find("{{ include_md(path=\"") {
        let rest = &src[start + 20..];
        let end = rest.find("\") }}").unwrap();
        let included = std::fs::read_to_string(root.join(&rest[..end])).unwrap();
        src.replace_range(start..start + 20 + end + 5, &included);
    }
    src
}

/// Absolute http(s) addresses in Markdown links/images and raw HTML `href`/`src`.
fn absolute_urls(markdown: &str) -> Vec<String> {
    let body = markdown.splitn(3, "+++").nth(2).unwrap_or(markdown);
    let mut urls = Vec::new();
    for event in Parser::new_ext(body, pulldown_cmark::Options::all()) {
        match event {
            Event::Start(Tag::Link { dest_url, .. })
            | Event::Start(Tag::Image { dest_url, .. }) => urls.push(dest_url.to_string()),
            Event::Html(h) | Event::InlineHtml(h) => urls.extend(common::attribute_urls(&h)),
            _ => {}
        }
    }
    urls.retain(|u| u.starts_with("http://") || u.starts_with("https://"));
    urls
}

#[test]
fn every_corpus_issue_composes() {
    let Some(corpus) = corpus() else {
        return;
    };
    let root = corpus.join("rust-trends");
    let composer = common::composer(&root, &common::default_template());
    let mut issues: Vec<PathBuf> = std::fs::read_dir(root.join("content/newsletter"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    issues.sort();
    issues.push(corpus.join("seed-issue.md"));
    assert!(
        issues.len() >= 50,
        "corpus looks incomplete: {} issues",
        issues.len()
    );

    let recipient = Recipient {
        email: "reader@example.com",
        name: None,
        unsubscribe_url: "https://example.com/u/T",
    };
    let mut failures = Vec::new();
    for path in &issues {
        let name = path.display();
        let issue = match composer.compose_file(path) {
            Ok(issue) => issue,
            Err(e) => {
                failures.push(format!("{name}: {e}"));
                continue;
            }
        };
        let (html, text) = issue.personalize(&recipient);
        if html.len() >= 102 * 1024 {
            failures.push(format!("{name}: HTML is {} bytes", html.len()));
        }
        if let Some(tag) = common::find_html_tag(&text) {
            failures.push(format!("{name}: HTML tag in text: {tag}"));
        }
        if html.contains("%%lp-") || text.contains("%%lp-") {
            failures.push(format!("{name}: marker left after personalisation"));
        }
        let html_urls = common::attribute_urls(&html);
        if !html.contains(r#"<html lang="en" dir="ltr""#) {
            failures.push(format!("{name}: the HTML is not lang=\"en\" dir=\"ltr\""));
        }
        // Nothing remote but the issue's own links and images, its web
        // address and the unsubscribe link: no web font, no tracker.
        let own: Vec<String> = composer
            .addresses(path)
            .unwrap_or_else(|e| panic!("{name}: {e}"))
            .into_iter()
            .map(|a| a.url.to_string())
            .collect();
        let issue_url = format!("https://rust-trends.com/newsletter/{}/", issue.issue.slug);
        for url in html_urls.iter().chain(&common::css_urls(&html)) {
            let remote =
                url.starts_with("http:") || url.starts_with("https:") || url.starts_with("//");
            let known = own.iter().any(|o| o == url)
                || absolute_urls(&source_after_includes(&root, path)).contains(url)
                || *url == issue_url
                || url == recipient.unsubscribe_url;
            if remote && !known {
                failures.push(format!(
                    "{name}: the HTML loads or links {url}, which the issue does not"
                ));
            }
        }
        if html.contains("fonts.googleapis.com") {
            failures.push(format!("{name}: Google Fonts in the HTML"));
        }
        for url in absolute_urls(&source_after_includes(&root, path)) {
            if !html_urls.contains(&url) {
                failures.push(format!("{name}: {url} missing from the HTML"));
            }
            if !text.contains(&url) {
                failures.push(format!("{name}: {url} missing from the text"));
            }
        }
        for url in &html_urls {
            if url.starts_with("../") || (url.starts_with('/') && !url.starts_with("//")) {
                failures.push(format!("{name}: relative address left in the HTML: {url}"));
            }
        }
        for line in text.lines() {
            // Code blocks keep their lines; a long URL may exceed the width on a line of its own.
            if line.chars().count() > 72
                && !line.starts_with("    ")
                && line.trim().contains(' ')
                && !line.contains("://")
            {
                failures.push(format!("{name}: text line over 72 columns: {line}"));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} problems:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn corpus_relative_image_resolves_against_issue_url() {
    let Some(corpus) = corpus() else {
        return;
    };
    let root = corpus.join("rust-trends");
    let composer = common::composer(&root, &common::default_template());
    let issue = composer
        .compose_file(&root.join("content/newsletter/1.md"))
        .unwrap();
    assert!(
        issue
            .issue
            .html
            .as_str()
            .contains("https://rust-trends.com/newsletter/1/logo_tor.webp")
    );
    assert!(
        issue
            .issue
            .text
            .as_str()
            .contains("https://rust-trends.com/newsletter/1/logo_tor.webp")
    );

    let seed = composer
        .compose_file(&corpus.join("seed-issue.md"))
        .unwrap();
    assert!(
        seed.issue
            .html
            .as_str()
            .contains("https://rust-trends.com/signup/"),
        "include_md snippet link resolved"
    );
    assert_eq!(seed.issue.slug, "rust-enterprise-breakthrough-2025");
}
