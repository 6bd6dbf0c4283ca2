//! `render`: the HTML, text and MJML files, and the JSON report.

use crate::{issue, lp, stderr};

#[tokio::test]
async fn render_writes_html_text_and_mjml_and_reports_json() {
    let lp = lp();
    let out_dir = lp.path("rendered");
    let out = lp
        .run(&[
            "render",
            &issue("toml.md"),
            "--out",
            out_dir.to_str().unwrap(),
            "--json",
        ])
        .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let doc: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("one JSON document on stdout");
    assert!(doc["slug"].as_str().is_some_and(|s| !s.is_empty()));
    assert!(doc["subject"].as_str().is_some_and(|s| !s.is_empty()));
    assert!(doc["html_bytes"].as_u64().unwrap() > 1000);
    assert!(doc["warnings"].is_array());
    let html = std::fs::read_to_string(out_dir.join("email.html")).unwrap();
    let text = std::fs::read_to_string(out_dir.join("email.txt")).unwrap();
    let mjml = std::fs::read_to_string(out_dir.join("email.mjml")).unwrap();
    assert!(
        html.contains("<html") && html.contains("/u/preview"),
        "preview unsubscribe link in HTML"
    );
    assert!(
        text.contains("/u/preview") && !text.contains('<'),
        "text part has the link and no tags"
    );
    assert!(mjml.contains("<mjml"));
}

#[tokio::test]
async fn render_defaults_to_out_slug() {
    let lp = lp();
    let out = lp.run(&["render", &issue("toml.md"), "--json"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let slug = doc["slug"].as_str().unwrap();
    assert!(lp.path(&format!("out/{slug}/email.html")).exists());
}
