//! What a spam filter makes of the messages: every Rust Trends issue sent
//! through the file transport and scored by SpamAssassin offline. A rule
//! about the HTML or the body hitting is a fault of the layout (the hidden
//! preheader used to be white text: HTML_FONT_LOW_CONTRAST on every issue).

use std::path::{Path, PathBuf};
use std::process::Command;

use letterpress_testkit::require::{self, Dependency};

use crate::helpers::*;

/// Rules that describe a test installation rather than the message's HTML
/// or body, each with why it cannot be helped here.
const NOT_ABOUT_THE_BODY: &[(&str, &str)] = &[
    // Informational (0.001): the message has an HTML part at all.
    ("HTML_MESSAGE", "any HTML mail"),
    // The issue's own words (a dollar amount), not the layout: 0.001, an
    // input to meta rules, fired by three issues that quote prize money.
    ("LOTS_OF_MONEY", "the author's text"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_spamassassin_rule_fires_on_the_html_or_body_of_any_issue() {
    let Some(corpus) = letterpress_testkit::corpus() else {
        return;
    };
    if Command::new("perl")
        .args(["-MMail::SpamAssassin", "-e", "1"])
        .output()
        .map(|o| !o.status.success())
        .unwrap_or(true)
    {
        require::missing(
            Dependency::Spamassassin,
            "perl cannot load Mail::SpamAssassin",
        );
        return;
    }
    let site = corpus.join("rust-trends");
    let mut lp = lp().with_content_root(&site);
    lp.set(
        "LETTERPRESS_NEWSLETTER__ISSUE_URL",
        "https://rust-trends.com/newsletter/{slug}/",
    );
    lp.set(
        "LETTERPRESS_NEWSLETTER__FROM",
        "Rust Trends <newsletter@rust-trends.com>",
    );
    // Signed, as every bulk sender to Gmail and Yahoo sends.
    let key = letterpress_dkim::RsaKey::generate().expect("RSA key");
    let key_path = lp.path("dkim.pem");
    std::fs::write(&key_path, key.to_pkcs8_pem().expect("PEM")).expect("write the key");
    lp.set("LETTERPRESS_DKIM__DOMAIN", "rust-trends.com")
        .set("LETTERPRESS_DKIM__SELECTOR", "lp2026")
        .set(
            "LETTERPRESS_DKIM__PRIVATE_KEY_PATH",
            key_path.to_str().expect("a UTF-8 path"),
        );
    import(&lp, &[("reader@example.org", "Reader", "active")]).await;

    let issues = markdown_files(&site.join("content/newsletter"));
    assert!(issues.len() >= 50, "the corpus has its issues: {issues:?}");
    for issue in &issues {
        send(&lp, issue, &[]).await;
    }
    let messages = files_with(&lp.path("outbox"), "eml");
    assert_eq!(messages.len(), issues.len(), "one message per issue");
    for m in &messages {
        let raw = std::fs::read_to_string(m).expect("a message");
        assert!(
            raw.starts_with("DKIM-Signature:"),
            "{} is signed",
            m.display()
        );
    }

    let out = Command::new("perl")
        .arg(letterpress_testkit::repo().join("tests/spam/score.pl"))
        .args(&messages)
        .output()
        .expect("run perl");
    assert!(
        out.status.success(),
        "score.pl failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = String::from_utf8_lossy(&out.stdout);
    let mut faults = Vec::new();
    let mut scored = 0;
    for line in report.lines() {
        let mut fields = line.split('\t');
        let (Some(file), Some(_score), Some(rules)) = (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        scored += 1;
        for hit in rules.split(',').filter(|r| !r.is_empty()) {
            let (rule, score) = hit.split_once('=').unwrap_or((hit, "0"));
            let score: f64 = score.parse().unwrap_or(0.0);
            if score > 0.0 && !NOT_ABOUT_THE_BODY.iter().any(|(r, _)| *r == rule) {
                faults.push(format!("{file}: {rule} ({score})"));
            }
        }
    }
    assert_eq!(scored, messages.len(), "every message scored:\n{report}");
    assert!(
        faults.is_empty(),
        "rules hit:\n{}\n\nfull report:\n{report}",
        faults.join("\n")
    );
}

fn markdown_files(dir: &Path) -> Vec<PathBuf> {
    files_with(dir, "md")
        .into_iter()
        .filter(|p| p.file_name().is_some_and(|n| n != "_index.md"))
        .collect()
}

/// Files with this extension under `dir`, at any depth, sorted.
fn files_with(dir: &Path, extension: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == extension) {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}
