//! The operator's command line, driven as a user would: the built binary,
//! a fresh SQLite file per test, and the messages it prints.
//!
//! Covers rendering and linting (issue files and their errors) and the
//! subscriber commands (import, export, add, list, remove).

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::{Command, Output};

const SECRET: &str = "cli-test-secret-0123456789abcdef0123456789";

/// A throwaway letterpress installation: its own directory, database and
/// config (an empty file, so only the defaults and the environment count).
struct Lp {
    dir: tempfile::TempDir,
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn fixtures_site() -> PathBuf {
    repo().join("crates/composer/tests/fixtures/site")
}

impl Lp {
    fn new() -> Lp {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("letterpress.toml"), "").unwrap();
        Lp { dir }
    }

    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_letterpress"));
        c.current_dir(self.dir.path())
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("LETTERPRESS_CONFIG", self.path("letterpress.toml"))
            .env("LETTERPRESS_SERVER__SECRET", SECRET)
            .env(
                "LETTERPRESS_DATABASE__URL",
                format!("sqlite://{}", self.path("lp.db").display()),
            )
            .env("LETTERPRESS_CONTENT__ROOT", fixtures_site())
            .env(
                "LETTERPRESS_CONTENT__TEMPLATE",
                repo().join("templates/default.mjml"),
            )
            .args(args);
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("run letterpress")
    }

    /// Runs and insists on success; returns stderr (human output).
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "letterpress {args:?} failed: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    fn list(&self) -> Vec<serde_json::Value> {
        let out = self.run(&["subscribers", "list", "--json"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<Vec<serde_json::Value>>(&out.stdout)
            .expect("list --json is a JSON array")
    }

    fn status_of(&self, email: &str) -> Option<String> {
        self.list()
            .into_iter()
            .find(|s| {
                s["email"]
                    .as_str()
                    .is_some_and(|e| e.eq_ignore_ascii_case(email))
            })
            .map(|s| s["status"].as_str().unwrap_or_default().to_string())
    }
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn issue(name: &str) -> String {
    fixtures_site()
        .join("issues")
        .join(name)
        .display()
        .to_string()
}

#[test]
fn render_writes_html_text_and_mjml_and_reports_json() {
    let lp = Lp::new();
    let out_dir = lp.path("rendered");
    let out = lp.run(&[
        "render",
        &issue("toml.md"),
        "--out",
        out_dir.to_str().unwrap(),
        "--json",
    ]);
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

#[test]
fn render_defaults_to_out_slug() {
    let lp = Lp::new();
    let out = lp.run(&["render", &issue("toml.md"), "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let slug = doc["slug"].as_str().unwrap();
    assert!(lp.path(&format!("out/{slug}/email.html")).exists());
}

#[test]
fn bad_issues_fail_with_file_and_line() {
    let lp = Lp::new();
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
            let out = lp.run(&[command, &issue(file)]);
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

#[test]
fn check_prints_warnings_and_exits_zero() {
    let lp = Lp::new();
    let md = lp.path("lint.md");
    std::fs::write(
        &md,
        "+++\ntitle = \"Lint\"\n+++\n\n![](https://example.com/a.webp)\n\n[plain](http://example.com/)\n",
    )
    .unwrap();
    let out = lp.run(&["check", md.to_str().unwrap()]);
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

#[test]
fn usage_errors_exit_2() {
    let lp = Lp::new();
    assert_eq!(lp.run(&["render"]).status.code(), Some(2));
    assert_eq!(lp.run(&["no-such-command"]).status.code(), Some(2));
}

#[test]
fn config_errors_name_the_key_and_source() {
    let lp = Lp::new();
    std::fs::write(
        lp.path("letterpress.toml"),
        "[delivery]\nconcurrency = \"many\"\n",
    )
    .unwrap();
    let out = lp.run(&["render", &issue("toml.md")]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("delivery.concurrency") && err.contains("letterpress.toml"),
        "{err}"
    );

    std::fs::write(lp.path("letterpress.toml"), "").unwrap();
    let out = lp
        .cmd(&["render", &issue("toml.md")])
        .env("LETTERPRESS_DELIVERY__RETRY__INITIAL", "soon")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("delivery.retry.initial")
            && err.contains("LETTERPRESS_DELIVERY__RETRY__INITIAL"),
        "{err}"
    );

    std::fs::write(
        lp.path("letterpress.toml"),
        "[server]\nsecret = \"in-the-file-is-wrong\"\n",
    )
    .unwrap();
    let out = lp.run(&["render", &issue("toml.md")]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("server.secret"), "{}", stderr(&out));
}

/// The awkward CSV of the issue: BOM, CRLF, quoted commas and newlines,
/// bad addresses, a wrong field count, a duplicate in other letter case.
fn messy_csv(rows: usize) -> (String, usize) {
    let mut csv = String::from("\u{feff}Email Address,First Name,Last Name,TAGS,City\r\n");
    let mut valid = 0;
    for i in 0..rows {
        match i {
            10 => csv.push_str("bob@,Bob,Broken,,Nowhere\r\n"),
            20 => csv.push_str("only-two-fields@example.com,Two\r\n"),
            30 => csv.push_str("USER5@EXAMPLE.COM,Dup,Licate,,Elsewhere\r\n"),
            40 => csv.push_str("not an address,Sp,Ace,,X\r\n"),
            50 => csv.push_str("Suppressed@Example.com,Back,Again,,Here\r\n"),
            _ => {
                valid += 1;
                let _ = write!(
                    csv,
                    "user{i}@example.com,\"Smith, {i}\",\"Multi\r\nLine\",\"rust,news\",City {i}\r\n"
                );
            }
        }
    }
    (csv, valid)
}

#[test]
fn import_keeps_every_valid_row_and_reports_bad_lines() {
    let lp = Lp::new();
    lp.ok(&[
        "subscribers",
        "add",
        "suppressed@example.com",
        "--name",
        "Original",
    ]);
    lp.ok(&["subscribers", "remove", "suppressed@example.com"]);
    let (csv, valid) = messy_csv(100_000);
    std::fs::write(lp.path("list.csv"), &csv).unwrap();
    // Dry run first: validates, counts, writes nothing.
    let err = lp.ok(&["subscribers", "import", "list.csv", "--dry-run"]);
    assert!(err.contains(&format!("{valid} added")), "{err}");
    assert_eq!(lp.list().len(), 1, "dry run wrote nothing");

    let err = lp.ok(&["subscribers", "import", "list.csv"]);
    assert!(err.contains(&format!("{valid} added")), "{err}");
    assert!(
        err.contains("1 suppressed") && err.contains("4 rejected"),
        "{err}"
    );
    // Each record spans two physical lines (a quoted newline): record i starts at line 2 + 2*i,
    // except that the bad rows are one line long. Check the messages name the right lines.
    assert!(
        err.contains("line 22: \"bob@\" is not a valid email address"),
        "{err}"
    );
    assert!(err.contains("expected 5 fields, found 2"), "{err}");
    assert!(err.contains("line 60: duplicate of line 12"), "{err}");
    assert!(
        err.contains("\"not an address\" is not a valid email address"),
        "{err}"
    );

    let list = lp.list();
    assert_eq!(list.len(), valid + 1);
    let suppressed = list
        .iter()
        .find(|s| s["email"] == "suppressed@example.com")
        .unwrap();
    assert_eq!(
        suppressed["status"], "unsubscribed",
        "an import never reactivates"
    );
    assert_eq!(
        suppressed["name"], "Original",
        "nor changes a suppressed row"
    );
    let s = list
        .iter()
        .find(|s| s["email"] == "user7@example.com")
        .unwrap();
    assert_eq!(s["name"], "Smith, 7 Multi\r\nLine");
    assert_eq!(s["tags"], serde_json::json!(["rust", "news"]));
    assert_eq!(s["status"], "active");

    // Importing again changes nothing.
    let err = lp.ok(&["subscribers", "import", "list.csv"]);
    assert!(
        err.contains(&format!("0 added, 0 updated, {valid} unchanged")),
        "{err}"
    );
}

#[test]
fn suppressed_addresses_stay_suppressed_unless_resubscribed() {
    let lp = Lp::new();
    lp.ok(&["subscribers", "add", "gone@example.com", "--name", "Gone"]);
    lp.ok(&["subscribers", "remove", "gone@example.com"]);
    assert_eq!(
        lp.status_of("gone@example.com").as_deref(),
        Some("unsubscribed")
    );

    std::fs::write(
        lp.path("l.csv"),
        "email,name\nGONE@example.com,Back Again\nnew@example.com,New\n",
    )
    .unwrap();
    let err = lp.ok(&["subscribers", "import", "l.csv"]);
    assert!(
        err.contains("1 added") && err.contains("1 suppressed"),
        "{err}"
    );
    assert_eq!(
        lp.status_of("gone@example.com").as_deref(),
        Some("unsubscribed")
    );

    let out = lp.run(&["subscribers", "add", "gone@example.com"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "add of a suppressed address is refused"
    );
    assert!(stderr(&out).contains("--resubscribe"));

    lp.ok(&["subscribers", "add", "gone@example.com", "--resubscribe"]);
    assert_eq!(lp.status_of("gone@example.com").as_deref(), Some("active"));
}

#[test]
fn forget_erases_the_person_and_keeps_the_suppression() {
    let lp = Lp::new();
    lp.ok(&[
        "subscribers",
        "add",
        "private@example.com",
        "--name",
        "Private Person",
    ]);
    lp.ok(&["subscribers", "remove", "private@example.com", "--forget"]);
    let dump = serde_json::to_string(&lp.list()).unwrap();
    assert!(
        !dump.contains("private@example.com") && !dump.contains("Private Person"),
        "{dump}"
    );
    std::fs::write(lp.path("l.csv"), "email\nPrivate@Example.com\n").unwrap();
    let err = lp.ok(&["subscribers", "import", "l.csv"]);
    assert!(
        err.contains("0 added") && err.contains("1 suppressed"),
        "{err}"
    );
    assert!(lp.status_of("private@example.com").is_none());
}

#[test]
fn a_forgotten_address_stays_refused_after_the_secret_is_rotated() {
    let lp = Lp::new();
    lp.ok(&["subscribers", "add", "private@example.com"]);
    lp.ok(&["subscribers", "remove", "private@example.com", "--forget"]);
    let rotated = |previous: Option<&str>| {
        let mut cmd = lp.cmd(&["subscribers", "add", "Private@Example.com"]);
        cmd.env(
            "LETTERPRESS_SERVER__SECRET",
            "rotated-cli-test-secret-0123456789abcdef012345",
        );
        if let Some(previous) = previous {
            cmd.env("LETTERPRESS_SERVER__PREVIOUS_SECRETS", previous);
        }
        cmd.output().expect("run letterpress")
    };

    let out = rotated(Some(SECRET));
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("suppressed"), "{}", stderr(&out));
    assert!(lp.status_of("private@example.com").is_none());

    // The hash was made with the old secret: once it is no longer listed,
    // nothing recognises the address any more.
    let out = rotated(None);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        lp.status_of("private@example.com").as_deref(),
        Some("active")
    );
}

#[test]
fn export_then_import_into_an_empty_store_round_trips() {
    let a = Lp::new();
    std::fs::write(
        a.path("l.csv"),
        "email,name,tags,status,plan\n\
         one@example.com,\"One, Esq.\",\"a,b\",active,pro\n\
         two@bücher.de,Zwei,,unsubscribed,\n\
         three@example.com,,x,bounced,free\n\
         four@example.com,Four,,pending,\n",
    )
    .unwrap();
    a.ok(&["subscribers", "import", "l.csv"]);
    a.ok(&["subscribers", "export", "--out", "export.csv"]);

    let b = Lp::new();
    std::fs::copy(a.path("export.csv"), b.path("export.csv")).unwrap();
    b.ok(&["subscribers", "import", "export.csv"]);
    let key = |v: &serde_json::Value| {
        (
            v["email"].clone(),
            v["name"].clone(),
            v["status"].clone(),
            v["tags"].clone(),
            v["attributes"].clone(),
        )
    };
    let mut left: Vec<_> = a.list().iter().map(key).collect();
    let mut right: Vec<_> = b.list().iter().map(key).collect();
    left.sort_by_key(|k| k.0.to_string());
    right.sort_by_key(|k| k.0.to_string());
    assert_eq!(left.len(), 4);
    assert_eq!(left, right);
}

#[test]
fn listmonk_export_imports_as_is() {
    let lp = Lp::new();
    std::fs::write(
        lp.path("listmonk.csv"),
        "uuid,email,name,attributes,status,created_at,updated_at\n\
         5e0c,ada@example.com,Ada,\"{\"\"city\"\": \"\"London\"\"}\",enabled,2024-01-01,2024-01-02\n\
         6f1d,bob@example.com,Bob,{},blocklisted,2024-01-01,2024-01-02\n",
    )
    .unwrap();
    lp.ok(&["subscribers", "import", "listmonk.csv"]);
    let list = lp.list();
    let ada = list
        .iter()
        .find(|s| s["email"] == "ada@example.com")
        .unwrap();
    assert_eq!(ada["status"], "active");
    assert_eq!(ada["attributes"]["city"], "London");
    assert!(
        ada["attributes"].get("uuid").is_none(),
        "bookkeeping columns are not attributes"
    );
    assert_eq!(
        lp.status_of("bob@example.com").as_deref(),
        Some("unsubscribed")
    );
}

#[test]
fn import_without_an_email_column_is_an_error_that_names_the_file() {
    let lp = Lp::new();
    std::fs::write(lp.path("bad.csv"), "name,city\nBob,Paris\n").unwrap();
    let out = lp.run(&["subscribers", "import", "bad.csv"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("bad.csv: line 1") && stderr(&out).contains("email"),
        "{}",
        stderr(&out)
    );
    let out = lp.run(&["subscribers", "import", "missing.csv"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("missing.csv"));
}

#[test]
fn list_filters_by_status_and_rejects_unknown_ones() {
    let lp = Lp::new();
    lp.ok(&[
        "subscribers",
        "add",
        "a@example.com",
        "--tag",
        "x",
        "--tag",
        "y",
    ]);
    lp.ok(&["subscribers", "add", "b@example.com"]);
    lp.ok(&["subscribers", "remove", "b@example.com"]);
    let out = lp.run(&["subscribers", "list", "--status", "active", "--json"]);
    let active: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(active.len(), 1);
    assert_eq!(active[0]["tags"], serde_json::json!(["x", "y"]));
    let out = lp.run(&["subscribers", "list", "--status", "gone"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("gone"));
}
