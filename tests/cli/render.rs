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

/// The `<html>` start tag of an issue rendered with these front matter
/// lines (and, with `language`, `newsletter.language` set).
async fn html_tag(front: &str, language: Option<&str>) -> Result<String, String> {
    let mut lp = lp();
    if let Some(language) = language {
        lp.set("LETTERPRESS_NEWSLETTER__LANGUAGE", language);
    }
    let issue = lp.write_issue("issues", "spoken", front);
    let out_dir = lp.path("out");
    let out = lp
        .run(&[
            "render",
            issue.to_str().unwrap(),
            "--out",
            out_dir.to_str().unwrap(),
        ])
        .await;
    if !out.status.success() {
        return Err(stderr(&out));
    }
    let html = std::fs::read_to_string(out_dir.join("email.html")).unwrap();
    let start = html.find("<html").expect("an <html> tag");
    let end = start + html[start..].find('>').unwrap();
    Ok(html[start..=end].to_string())
}

#[tokio::test]
async fn the_html_says_the_readers_language() {
    for (front, setting, lang_dir) in [
        ("", None, r#"lang="en" dir="ltr""#),
        ("", Some("de-CH"), r#"lang="de-CH" dir="ltr""#),
        ("language = \"fr\"", Some("de"), r#"lang="fr" dir="ltr""#),
        ("[extra]\nlanguage = \"ar\"", None, r#"lang="ar" dir="rtl""#),
        ("language = \"he\"", None, r#"lang="he" dir="rtl""#),
    ] {
        let tag = html_tag(front, setting)
            .await
            .unwrap_or_else(|e| panic!("{front}: {e}"));
        assert!(tag.contains(lang_dir), "{front:?} {setting:?}: {tag}");
    }
}

#[tokio::test]
async fn a_malformed_language_is_an_error_naming_where_it_is() {
    let err = html_tag("language = \"english please\"", None)
        .await
        .expect_err("a malformed front matter language fails");
    assert!(
        err.contains("spoken.md:4") && err.contains("language"),
        "file:line and the key: {err}"
    );
    let err = html_tag("", Some("en_US"))
        .await
        .expect_err("a malformed newsletter.language fails");
    assert!(err.contains("newsletter.language"), "names the key: {err}");
}

#[tokio::test]
async fn check_warns_about_a_remote_stylesheet() {
    let mut lp = lp();
    let layout = lp.path("font.mjml");
    let default =
        std::fs::read_to_string(letterpress_testkit::repo().join("templates/default.mjml"))
            .expect("the default layout");
    std::fs::write(
        &layout,
        default.replace(
            "<mj-attributes>",
            "<mj-font name=\"Inter\" href=\"https://fonts.example.net/inter.css\" />\n<mj-attributes>",
        )
        .replace("font-family=\"", "font-family=\"Inter, "),
    )
    .expect("write layout");
    let issue = lp.write_issue("issues", "styled", "");
    let out = lp.run(&["check", issue.to_str().unwrap()]).await;
    assert!(out.status.success(), "a warning only: {}", stderr(&out));
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("remote stylesheet"),
        "the default layout loads nothing remote"
    );
    lp.set("LETTERPRESS_CONTENT__TEMPLATE", layout.to_str().unwrap());
    let out = lp.run(&["check", issue.to_str().unwrap()]).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success()
            && stdout.contains("remote stylesheet, https://fonts.example.net/inter.css"),
        "{stdout}{}",
        stderr(&out)
    );
}
