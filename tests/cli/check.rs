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

/// An installation whose content root is its own folder, for issues and
/// snippets the test writes.
fn own_site() -> letterpress_testkit::Lp {
    letterpress_testkit::Lp::new(env!("CARGO_BIN_EXE_letterpress"))
}

/// Writes `name` (front matter + `body`) in the installation; returns its path.
fn write(lp: &letterpress_testkit::Lp, name: &str, body: &str) -> String {
    let path = lp.path(name);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, format!("+++\ntitle = \"Deep\"\n+++\n\n{body}")).unwrap();
    path.display().to_string()
}

/// `render`, `check` and `send --yes` of `issue` all exit 1 (not a
/// signal) with a message containing every `needle`; nothing is queued.
async fn refused_everywhere(lp: &letterpress_testkit::Lp, issue: &str, needles: &[&str]) {
    for args in [
        vec!["render", issue],
        vec!["check", issue],
        vec!["send", issue, "--yes"],
    ] {
        let out = lp.run(&args).await;
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{args:?} must exit 1: {err}");
        for needle in needles {
            assert!(
                err.contains(needle),
                "{args:?}: {err:?} should contain {needle:?}"
            );
        }
    }
    let status = lp.run(&["status", "--json"]).await;
    let issues: serde_json::Value = serde_json::from_slice(&status.stdout).expect("JSON");
    assert_eq!(issues, serde_json::json!([]), "nothing was queued");
}

/// Deep nesting used to overflow the stack inside mrml and abort the
/// process (exit by SIGABRT, no message); now it is an error at the line.
#[tokio::test]
async fn deep_nesting_is_an_error_with_file_and_line_not_an_abort() {
    let lp = own_site();
    lp.add(&["reader@example.com"]).await;
    let cases = [
        // (file, body, line of the error)
        (
            "quotes.md",
            format!("Fine.\n\n{} deep\n", ">".repeat(5000)),
            7,
        ),
        ("lists.md", format!("{}deep\n", "- ".repeat(3000)), 5),
        (
            "indented.md",
            (0..120)
                .map(|i| format!("{}- level {i}\n", "  ".repeat(i)))
                .collect(),
            // Two elements per level (list and item): level 50 opens the 101st.
            55,
        ),
        (
            "divs.md",
            format!(
                "Text.\n\n{}x{}\n",
                "<div>".repeat(5000),
                "</div>".repeat(5000)
            ),
            7,
        ),
        (
            "emphasis.md",
            format!("{}x{}\n", "*a _".repeat(2000), "_ a*".repeat(2000)),
            5,
        ),
    ];
    for (name, body, line) in cases {
        let issue = write(&lp, name, &body);
        refused_everywhere(
            &lp,
            &issue,
            &["nesting deeper than 100", &format!("{name}:{line}")],
        )
        .await;
    }
    // Nesting up to the limit still composes.
    let fine = write(
        &lp,
        "fine.md",
        &format!("{}x{}\n", "<div>".repeat(99), "</div>".repeat(99)),
    );
    let out = lp.run(&["check", &fine]).await;
    assert!(out.status.success(), "{}", stderr(&out));
}

/// 21 small files that each include the next twice expanded to 2^20
/// copies (over 100 MB of HTML, minutes and gigabytes); the count of
/// includes is capped and the include that crossed it is named.
#[tokio::test]
async fn an_include_bomb_is_capped_at_the_include_that_crossed_it() {
    let lp = own_site();
    for i in 0..21 {
        let next = if i < 20 {
            format!("{{{{ include_md(path=\"bomb/b{}.md\") }}}}\n", i + 1)
        } else {
            String::new()
        };
        std::fs::create_dir_all(lp.path("bomb")).unwrap();
        std::fs::write(
            lp.path(&format!("bomb/b{i}.md")),
            format!("Part {i} of the story.\n\n{next}\n{next}"),
        )
        .unwrap();
    }
    let issue = write(
        &lp,
        "bomb.md",
        "Hello.\n\n{{ include_md(path=\"bomb/b0.md\") }}\n",
    );
    refused_everywhere(
        &lp,
        &issue,
        &[
            "include_md: more than 100 includes in one issue",
            "b18.md:5",
            "(included from",
            "bomb.md:7)",
        ],
    )
    .await;

    // One include of a file past the size limit is refused before it is read whole.
    std::fs::write(lp.path("big.md"), "word ".repeat(600_000)).unwrap();
    let issue = write(&lp, "big-issue.md", "{{ include_md(path=\"big.md\") }}\n");
    refused_everywhere(&lp, &issue, &["big-issue.md:5", "past 2048 KB"]).await;
}

/// Bad UTF-8 used to say "stream did not contain valid UTF-8" with no
/// line; the issue's line and that of an included file are named.
#[tokio::test]
async fn malformed_utf8_is_reported_at_its_line() {
    let lp = own_site();
    let issue = lp.path("latin1.md");
    std::fs::write(
        &issue,
        b"+++\ntitle = \"Caf\xc3\xa9\"\n+++\n\nFine line.\n\nCaf\xe9 in Latin-1.\n",
    )
    .unwrap();
    refused_everywhere(&lp, issue.to_str().unwrap(), &["latin1.md:7", "UTF-8"]).await;

    std::fs::write(lp.path("snippet.md"), b"ok\n\xff\n").unwrap();
    let issue = write(
        &lp,
        "includes.md",
        "\n{{ include_md(path=\"snippet.md\") }}\n",
    );
    refused_everywhere(
        &lp,
        &issue,
        &["snippet.md:2", "UTF-8", "included from", "includes.md:6"],
    )
    .await;
}

/// `mj-include` failures in a layout used to be mrml's "unable to load
/// included template ... at position 24:34"; now the layout's file and
/// line. A partial that includes itself used to overflow the stack.
#[tokio::test]
async fn mj_include_failures_and_deep_layouts_name_the_layout_line() {
    let mut lp = own_site();
    let issue = write(&lp, "issue.md", "Hello.\n");
    std::fs::create_dir_all(lp.path("layout/partials")).unwrap();
    let body = |inner: &str| {
        format!(
            "<mjml>\n  <mj-body>\n    {inner}\n    <mj-section><mj-column><mj-text>{{{{ content }}}}</mj-text></mj-column></mj-section>\n  </mj-body>\n</mjml>\n"
        )
    };
    std::fs::write(
        lp.path("layout/partials/loop.mjml"),
        "<mj-section><mj-column><mj-text>again</mj-text></mj-column></mj-section>\n<mj-include path=\"partials/loop.mjml\" />\n",
    )
    .unwrap();
    std::fs::write(lp.path("outside.mjml"), "<mj-section></mj-section>\n").unwrap();
    std::fs::write(
        lp.path("layout/partials/cafe.mjml"),
        b"<mj-section><mj-column>\n<mj-text>Caf\xe9</mj-text></mj-column></mj-section>\n",
    )
    .unwrap();
    let cases = [
        (
            "missing.mjml",
            body("<mj-include path=\"partials/nope.mjml\" />"),
            vec!["missing.mjml:3", "partials/nope.mjml"],
        ),
        (
            "escape.mjml",
            body("<mj-include path=\"../outside.mjml\" />"),
            vec!["escape.mjml:3", "outside the layout's folder"],
        ),
        (
            "cycle.mjml",
            body("<mj-include path=\"partials/loop.mjml\" />"),
            vec!["loop.mjml:2", "mj-include cycle"],
        ),
        (
            "latin1.mjml",
            body("<mj-include path=\"partials/cafe.mjml\" />"),
            vec!["cafe.mjml:2", "UTF-8"],
        ),
        (
            "deep.mjml",
            body(&format!(
                "<mj-raw>{}</mj-raw>",
                "<div>".repeat(3000) + &"</div>".repeat(3000)
            )),
            vec!["nesting deeper than 100 at", "deep.mjml:3"],
        ),
    ];
    for (name, layout, needles) in cases {
        let path = lp.path(&format!("layout/{name}"));
        std::fs::write(&path, layout).unwrap();
        lp.set("LETTERPRESS_CONTENT__TEMPLATE", path.to_str().unwrap());
        for command in ["render", "check"] {
            let out = lp.run(&[command, &issue]).await;
            let err = stderr(&out);
            assert_eq!(out.status.code(), Some(1), "{command} with {name}: {err}");
            for needle in &needles {
                assert!(
                    err.contains(needle),
                    "{command} with {name}: {err:?} should contain {needle:?}"
                );
            }
        }
    }
}

/// Found by `make fuzz`: an unfinished Outlook conditional comment made
/// mrml's HTML tokenizer panic (exit 101, a panic message and no line).
#[tokio::test]
async fn an_unfinished_conditional_comment_is_an_error_at_its_line() {
    let lp = own_site();
    for (name, body) in [
        ("endif.md", "Text.\n\n<!--<![endif\n\n foo() }}t\n"),
        ("if.md", "Text.\n\n<!--[if mso\n"),
    ] {
        let issue = write(&lp, name, body);
        refused_everywhere(
            &lp,
            &issue,
            &[&format!("{name}:7"), "unfinished conditional comment"],
        )
        .await;
    }
    // A finished one is fine.
    let fine = write(
        &lp,
        "mso.md",
        "<!--[if mso]><table><tr><td><![endif]-->\nText\n<!--[if mso]></td></tr></table><![endif]-->\n",
    );
    let out = lp.run(&["check", &fine]).await;
    assert!(out.status.success(), "{}", stderr(&out));
}
