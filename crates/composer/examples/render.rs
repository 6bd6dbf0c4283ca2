//! Renders one issue to a folder: `cargo run -p letterpress-composer --example render -- ISSUE.md OUT [ROOT]`.
use std::path::PathBuf;

use letterpress_composer::{Composer, ComposerSettings, Newsletter, Recipient};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [issue, out, rest @ ..] = args.as_slice() else {
        return Err("usage: render ISSUE.md OUTDIR [CONTENT_ROOT]".into());
    };
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let composer = Composer::new(ComposerSettings {
        content_root: rest
            .first()
            .map_or_else(|| manifest.join("../../examples"), PathBuf::from),
        issue_url: "https://rust-trends.com/newsletter/{slug}/".into(),
        template: None,
        newsletter: Newsletter {
            name: "Rust Trends".into(),
            postal_address: "Example Street 1\n1234 AB Amsterdam".into(),
            language: Default::default(),
        },
    })?;
    let issue = composer.compose_file(issue.as_ref())?;
    for w in &issue.warnings {
        eprintln!("warning: {w}");
    }
    let (html, text) = issue.personalize(&Recipient {
        email: "reader@example.com",
        name: Some("Ada"),
        unsubscribe_url: "https://example.com/u/TOKEN",
    });
    std::fs::create_dir_all(out)?;
    std::fs::write(format!("{out}/email.html"), html)?;
    std::fs::write(format!("{out}/email.txt"), text)?;
    std::fs::write(format!("{out}/email.mjml"), &issue.mjml)?;
    eprintln!(
        "{} html={} text={}",
        issue.issue.slug,
        issue.issue.html.len(),
        issue.issue.text.len()
    );
    Ok(())
}
