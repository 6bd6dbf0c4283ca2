//! `letterpress render` and `letterpress check`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use letterpress_composer::Recipient;

use crate::config::Config;
use crate::wiring;

/// The recipient a preview is personalised for: no name, an unsubscribe
/// address that visibly is not a real token.
fn preview_unsubscribe_url(config: &Config) -> String {
    format!(
        "{}/u/preview",
        config.server.public_url.trim_end_matches('/')
    )
}

/// Writes `email.html`, `email.txt` and `email.mjml` to `out` (default
/// `out/<slug>/`); `--json` prints a summary on stdout.
pub(crate) fn render(
    config: &Config,
    issue: &Path,
    out: Option<PathBuf>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let composer = wiring::composer(config)?;
    let composed = composer.compose_file(issue)?;
    let dir = out.unwrap_or_else(|| Path::new("out").join(&composed.issue.slug));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let unsubscribe_url = preview_unsubscribe_url(config);
    let (html, text) = composed.personalize(&Recipient {
        email: "preview@example.com",
        name: None,
        unsubscribe_url: &unsubscribe_url,
    });
    for (name, body) in [
        ("email.html", &html),
        ("email.txt", &text),
        ("email.mjml", &composed.mjml),
    ] {
        let path = dir.join(name);
        std::fs::write(&path, body).with_context(|| format!("writing {}", path.display()))?;
    }
    if json {
        let doc = serde_json::json!({
            "slug": composed.issue.slug,
            "subject": composed.issue.subject,
            "preheader": composed.issue.preheader,
            "issue_url": composed.issue.issue_url,
            "html_bytes": html.len(),
            "text_bytes": text.len(),
            "out": dir,
            "warnings": composed.warnings.iter().map(|w| w.to_string()).collect::<Vec<_>>(),
        });
        println!("{doc}");
    } else {
        for w in &composed.warnings {
            eprintln!("warning: {}: {w}", issue.display());
        }
        eprintln!(
            "rendered {:?} ({} KB HTML, {} KB text) into {}; open {} in a browser",
            composed.issue.subject,
            html.len().div_ceil(1024),
            text.len().div_ceil(1024),
            dir.display(),
            dir.join("email.html").display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Prints the lints of an issue. A compose error is an error (exit 1);
/// warnings alone exit 0.
pub(crate) fn check(config: &Config, issue: &Path) -> anyhow::Result<ExitCode> {
    let composer = wiring::composer(config)?;
    let composed = composer.compose_file(issue)?;
    for w in &composed.warnings {
        println!("{}: warning: {w}", issue.display());
    }
    eprintln!(
        "{}: {} warning(s); subject {:?}, slug {}",
        issue.display(),
        composed.warnings.len(),
        composed.issue.subject,
        composed.issue.slug
    );
    Ok(ExitCode::SUCCESS)
}
