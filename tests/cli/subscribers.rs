//! `subscribers add`, `remove`, `list`: suppressions that stay, `--forget`,
//! a rotated secret.

use letterpress_testkit::SECRET;

use crate::{lp, stderr};

#[tokio::test]
async fn suppressed_addresses_stay_suppressed_unless_resubscribed() {
    let lp = lp();
    lp.ok(&["subscribers", "add", "gone@example.com", "--name", "Gone"])
        .await;
    lp.ok(&["subscribers", "remove", "gone@example.com"]).await;
    assert_eq!(
        lp.status_of("gone@example.com").await.as_deref(),
        Some("unsubscribed")
    );

    std::fs::write(
        lp.path("l.csv"),
        "email,name\nGONE@example.com,Back Again\nnew@example.com,New\n",
    )
    .unwrap();
    let err = lp.ok(&["subscribers", "import", "l.csv"]).await;
    assert!(
        err.contains("1 added") && err.contains("1 suppressed"),
        "{err}"
    );
    assert_eq!(
        lp.status_of("gone@example.com").await.as_deref(),
        Some("unsubscribed")
    );

    let out = lp.run(&["subscribers", "add", "gone@example.com"]).await;
    assert_eq!(
        out.status.code(),
        Some(1),
        "add of a suppressed address is refused"
    );
    assert!(stderr(&out).contains("--resubscribe"));

    lp.ok(&["subscribers", "add", "gone@example.com", "--resubscribe"])
        .await;
    assert_eq!(
        lp.status_of("gone@example.com").await.as_deref(),
        Some("active")
    );
}

#[tokio::test]
async fn forget_erases_the_person_and_keeps_the_suppression() {
    let lp = lp();
    lp.ok(&[
        "subscribers",
        "add",
        "private@example.com",
        "--name",
        "Private Person",
    ])
    .await;
    lp.ok(&["subscribers", "remove", "private@example.com", "--forget"])
        .await;
    let dump = serde_json::to_string(&lp.subscribers().await).unwrap();
    assert!(
        !dump.contains("private@example.com") && !dump.contains("Private Person"),
        "{dump}"
    );
    std::fs::write(lp.path("l.csv"), "email\nPrivate@Example.com\n").unwrap();
    let err = lp.ok(&["subscribers", "import", "l.csv"]).await;
    assert!(
        err.contains("0 added") && err.contains("1 suppressed"),
        "{err}"
    );
    assert!(lp.status_of("private@example.com").await.is_none());
}

#[tokio::test]
async fn a_forgotten_address_stays_refused_after_the_secret_is_rotated() {
    let lp = lp();
    lp.ok(&["subscribers", "add", "private@example.com"]).await;
    lp.ok(&["subscribers", "remove", "private@example.com", "--forget"])
        .await;
    let rotated = async |previous: Option<&str>| {
        let mut cmd = lp.cmd(&["subscribers", "add", "Private@Example.com"]);
        cmd.env(
            "LETTERPRESS_SERVER__SECRET",
            "rotated-cli-test-secret-0123456789abcdef012345",
        );
        if let Some(previous) = previous {
            cmd.env("LETTERPRESS_SERVER__PREVIOUS_SECRETS", previous);
        }
        cmd.output().await.expect("run letterpress")
    };

    let out = rotated(Some(SECRET)).await;
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("suppressed"), "{}", stderr(&out));
    assert!(lp.status_of("private@example.com").await.is_none());

    // The hash was made with the old secret: once it is no longer listed,
    // nothing recognises the address any more.
    let out = rotated(None).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        lp.status_of("private@example.com").await.as_deref(),
        Some("active")
    );
}

#[tokio::test]
async fn list_filters_by_status_and_rejects_unknown_ones() {
    let lp = lp();
    lp.ok(&[
        "subscribers",
        "add",
        "a@example.com",
        "--tag",
        "x",
        "--tag",
        "y",
    ])
    .await;
    lp.ok(&["subscribers", "add", "b@example.com"]).await;
    lp.ok(&["subscribers", "remove", "b@example.com"]).await;
    let out = lp
        .run(&["subscribers", "list", "--status", "active", "--json"])
        .await;
    let active: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(active.len(), 1);
    assert_eq!(active[0]["tags"], serde_json::json!(["x", "y"]));
    let out = lp.run(&["subscribers", "list", "--status", "gone"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("gone"));
}

/// Issue #10, point 10: `add --name` gets signup's rule: control
/// characters out, at most 200 characters (a longer one is an error that
/// names `--name`).
#[tokio::test]
async fn add_normalises_the_name_and_refuses_one_over_200_characters() {
    let lp = lp();
    lp.ok(&[
        "subscribers",
        "add",
        "esc@example.com",
        "--name",
        "\u{1b}]0;pwned\u{7}\u{1b}[2J Eve\u{202e}",
    ])
    .await;
    let list = lp.subscribers().await;
    assert_eq!(list[0]["name"], "]0;pwned[2J Eve");

    let long = "y".repeat(201);
    let out = lp
        .run(&["subscribers", "add", "long@example.com", "--name", &long])
        .await;
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("--name") && stderr(&out).contains("201 characters"),
        "{}",
        stderr(&out)
    );
    assert!(lp.status_of("long@example.com").await.is_none());
    lp.ok(&[
        "subscribers",
        "add",
        "max@example.com",
        "--name",
        &"y".repeat(200),
    ])
    .await;
}

/// Issue #10, point 10: `subscribers list` shows a control character in a
/// name (stored before names were normalised) as an escape, so a name can
/// neither set the terminal's title nor clear the screen.
#[tokio::test]
async fn list_escapes_control_characters_in_human_output() {
    let lp = lp();
    lp.ok(&["subscribers", "add", "old@example.com", "--tag", "t"])
        .await;
    letterpress_testkit::sql::execute(
        &format!("sqlite://{}", lp.path("lp.db").display()),
        &[
            "UPDATE subscribers SET name = 'Eve' || char(27) || ']0;pwned' || char(7) || char(27) || '[2J', \
             tags = '[\"a\\u001bb\"]'",
        ],
    )
    .await;
    let out = lp.ok(&["subscribers", "list"]).await;
    assert!(
        !out.contains('\u{1b}') && !out.contains('\u{7}'),
        "raw control characters on the terminal: {out:?}"
    );
    assert!(
        out.contains(r"Eve\u{1b}]0;pwned\u{7}\u{1b}[2J") && out.contains(r"a\u{1b}b"),
        "{out}"
    );
    // JSON keeps the stored value (escaped the JSON way).
    let list = lp.subscribers().await;
    assert_eq!(list[0]["name"], "Eve\u{1b}]0;pwned\u{7}\u{1b}[2J");
}
