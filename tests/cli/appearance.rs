//! The seed issue as a reader sees it, in headless Chromium, in the light
//! and the dark colour scheme: every piece of text keeps WCAG AA contrast
//! (4.5:1) against what it is painted on, measured on the computed colours
//! of the rendered page, and `scripts/screenshots.sh` (what `make
//! screenshots` runs) shoots both schemes at 600 and 375 px.

use std::path::{Path, PathBuf};
use std::process::Command;

use letterpress_testkit::chromium;

use crate::{lp, stderr};

/// The seed issue rendered into `out`; the path of its HTML.
async fn render_seed(out: &Path) -> Option<PathBuf> {
    let corpus = letterpress_testkit::corpus()?;
    let lp = lp().with_content_root(&corpus.join("rust-trends"));
    let run = lp
        .run(&[
            "render",
            corpus.join("seed-issue.md").to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ])
        .await;
    assert!(run.status.success(), "render: {}", stderr(&run));
    Some(out.join("email.html"))
}

#[tokio::test]
async fn text_keeps_aa_contrast_in_the_light_and_the_dark_scheme() {
    let Some(browser) = chromium() else { return };
    let dir = tempfile::tempdir().expect("temp dir");
    let Some(html) = render_seed(dir.path()).await else {
        return;
    };
    let script =
        std::fs::read_to_string(letterpress_testkit::repo().join("tests/appearance/contrast.js"))
            .expect("contrast.js");
    let page = std::fs::read_to_string(&html).expect("the HTML");
    let probed = dir.path().join("probed.html");
    let at = page.rfind("</body>").expect("a </body>");
    std::fs::write(
        &probed,
        format!("{}<script>{script}</script>{}", &page[..at], &page[at..]),
    )
    .expect("write the probed page");

    for (scheme, setting) in [("light", 1), ("dark", 0)] {
        let profile = tempfile::tempdir().expect("profile dir");
        let out = Command::new(&browser)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--disable-background-networking",
                "--window-size=600,2400",
                &format!("--blink-settings=preferredColorScheme={setting}"),
                &format!("--user-data-dir={}", profile.path().display()),
                "--dump-dom",
                &format!("file://{}", probed.display()),
            ])
            .output()
            .expect("run chromium");
        let dom = String::from_utf8_lossy(&out.stdout);
        let start = dom
            .rfind("<pre id=\"lp-contrast\">")
            .unwrap_or_else(|| panic!("{scheme}: no contrast report in the page"))
            + "<pre id=\"lp-contrast\">".len();
        let end = start + dom[start..].find("</pre>").expect("</pre>");
        let json = dom[start..end]
            .replace("&quot;", "\"")
            .replace("&amp;", "&");
        let report: serde_json::Value =
            serde_json::from_str(&json).unwrap_or_else(|e| panic!("{scheme}: {e}: {json}"));
        assert_eq!(
            report["dark"],
            serde_json::Value::Bool(scheme == "dark"),
            "the page saw the {scheme} scheme"
        );
        let checked = report["checked"].as_u64().unwrap_or(0);
        assert!(
            checked > 50,
            "{scheme}: only {checked} text elements measured"
        );
        let failures = report["failures"].as_array().cloned().unwrap_or_default();
        assert!(
            failures.is_empty(),
            "{scheme}: {} of {checked} text elements under 4.5:1:\n{}",
            failures.len(),
            failures
                .iter()
                .map(|f| f.to_string())
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
}

#[tokio::test]
async fn screenshots_are_taken_in_both_schemes() {
    if chromium().is_none() {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let Some(html) = render_seed(dir.path()).await else {
        return;
    };
    let shots = dir.path().join("shots");
    let out = Command::new("bash")
        .arg(letterpress_testkit::repo().join("scripts/screenshots.sh"))
        .arg(&html)
        .arg(&shots)
        .output()
        .expect("run screenshots.sh");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let read = |name: &str| {
        let bytes = std::fs::read(shots.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(bytes.starts_with(b"\x89PNG"), "{name} is a PNG");
        bytes
    };
    for width in ["desktop-600", "phone-375"] {
        let light = read(&format!("{width}.png"));
        let dark = read(&format!("{width}-dark.png"));
        assert_ne!(light, dark, "{width}: the dark scheme looks different");
    }
}
