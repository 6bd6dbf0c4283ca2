//! `check` and `render` on issue files: errors with file and line, warnings.

use crate::{issue, lp, stderr};

#[tokio::test]
async fn bad_issues_fail_with_file_and_line() {
    let lp = lp();
    // (fixture, something the message must say)
    let cases = [
        ("err_unterminated.md", "err_unterminated.md:1"),
        ("err_toml.md", "err_toml.md:3"),
        ("err_yaml.md", "err_yaml.md:"),
        ("err_no_title.md", "title"),
        ("err_outside.md", "err_outside.md:7"),
        ("err_missing.md", "err_missing.md:5"),
        ("err_unknown.md", "err_unknown.md:8"),
    ];
    for (file, expect) in cases {
        for command in ["render", "check"] {
            let out = lp.run(&[command, &issue(file)]).await;
            assert_eq!(
                out.status.code(),
                Some(1),
                "{command} {file} must exit 1: {}",
                stderr(&out)
            );
            let err = stderr(&out);
            assert!(
                err.contains(expect),
                "{command} {file}: {err:?} should contain {expect:?}"
            );
        }
    }
}

#[tokio::test]
async fn check_prints_warnings_and_exits_zero() {
    let lp = lp();
    let md = lp.path("lint.md");
    std::fs::write(
        &md,
        "+++\ntitle = \"Lint\"\n+++\n\n![](https://example.com/a.webp)\n\n[plain](http://example.com/)\n",
    )
    .unwrap();
    let out = lp.run(&["check", md.to_str().unwrap()]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("warning"), "{stdout}");
    assert!(
        stdout.to_lowercase().contains("alt"),
        "image without alt: {stdout}"
    );
    assert!(stdout.contains("webp"), "webp image: {stdout}");
    assert!(stdout.contains("http:"), "insecure link: {stdout}");
}
