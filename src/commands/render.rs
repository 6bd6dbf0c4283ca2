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

/// `check --links`: what to do with broken links.
pub(crate) struct LinkOptions {
    /// Report broken links but exit 0.
    pub warn_only: bool,
    /// Time for one request.
    pub timeout: std::time::Duration,
}

/// Prints the lints of an issue, and with `links` the verdict on each of
/// its links and images. A compose error is an error (exit 1); warnings
/// alone exit 0; a broken link exits 1 unless `warn_only`.
pub(crate) async fn check(
    config: &Config,
    issue: &Path,
    links: Option<LinkOptions>,
) -> anyhow::Result<ExitCode> {
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
    let Some(options) = links else {
        return Ok(ExitCode::SUCCESS);
    };
    let addresses = composer.addresses(issue)?;
    let settings = crate::linkcheck::LinkCheck {
        timeout: options.timeout,
        ..Default::default()
    };
    let findings = crate::linkcheck::check(&addresses, &settings).await?;
    let (mut broken, mut warned) = (0, 0);
    for f in &findings {
        let what = match f.address.kind {
            letterpress_composer::AddressKind::Link => "link",
            letterpress_composer::AddressKind::Image => "image",
        };
        let (label, reason) = match &f.verdict {
            crate::linkcheck::Verdict::Fine => continue,
            crate::linkcheck::Verdict::Broken(reason) => {
                broken += 1;
                ("broken", reason)
            }
            crate::linkcheck::Verdict::Warning(reason) => {
                warned += 1;
                ("warning", reason)
            }
        };
        println!(
            "{}:{}: {label} {what} {}: {reason}",
            issue.display(),
            f.address.line,
            f.address.url
        );
    }
    eprintln!(
        "{}: {} link(s) and image(s) checked: {broken} broken, {warned} warning(s)",
        issue.display(),
        findings.len()
    );
    Ok(if broken > 0 && !options.warn_only {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
