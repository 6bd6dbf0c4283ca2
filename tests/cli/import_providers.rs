//! `subscribers import` of the providers' own exports
//! (`tests/fixtures/imports/`): each is recognised by its header row, its
//! states become ours so that nobody who left, bounced or complained there
//! is active here, and an address already suppressed here stays so.
//! `--dry-run` says which format it took and what each state became.

use std::collections::BTreeMap;
use std::path::PathBuf;

use letterpress_testkit::Lp;

use crate::lp;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/imports")
        .join(name)
}

/// Imports `file` into an installation where `back@example.com` has
/// already unsubscribed (every fixture lists it as subscribed there), and
/// checks the detected format, the dry run's mapping lines, and every
/// address's status after the import. Returns the installation, for a
/// test's own checks of what the import kept.
async fn imports(file: &str, format: &str, mapping: &[&str], want: &[(&str, &str)]) -> Lp {
    let lp = lp();
    lp.ok(&["subscribers", "add", "back@example.com"]).await;
    lp.ok(&["subscribers", "remove", "back@example.com"]).await;
    let path = fixture(file);
    let path = path.to_str().unwrap();

    let dry = lp.ok(&["subscribers", "import", path, "--dry-run"]).await;
    assert!(
        dry.contains(&format!("{path}: {format}\n")),
        "format:\n{dry}"
    );
    for line in mapping {
        assert!(
            dry.lines().any(|l| l.trim() == *line),
            "mapping line {line:?}:\n{dry}"
        );
    }
    assert!(dry.contains(" 0 rejected"), "{dry}");
    assert_eq!(lp.subscribers().await.len(), 1, "a dry run writes nothing");

    let out = lp.ok(&["subscribers", "import", path]).await;
    let mut expected: BTreeMap<String, String> = want
        .iter()
        .map(|(e, s)| (e.to_string(), s.to_string()))
        .collect();
    expected.insert("back@example.com".into(), "unsubscribed".into());
    assert_eq!(lp.statuses().await, expected, "{out}");
    lp
}

/// The subscriber `email` as `subscribers list --json` shows it.
async fn subscriber(lp: &Lp, email: &str) -> serde_json::Value {
    lp.subscribers()
        .await
        .into_iter()
        .find(|s| s["email"] == email)
        .unwrap_or_else(|| panic!("{email} is not listed"))
}

#[tokio::test]
async fn emailoctopus() {
    imports(
        "emailoctopus.csv",
        "EmailOctopus export",
        &[
            "status \"SUBSCRIBED\" -> active: 2",
            "status \"UNSUBSCRIBED\" -> unsubscribed: 1",
            "status \"PENDING\" -> pending: 1",
        ],
        &[
            ("ann@example.com", "active"),
            ("bob@example.com", "unsubscribed"),
            ("cat@example.com", "pending"),
        ],
    )
    .await;
}

#[tokio::test]
async fn mailchimp_subscribed_unsubscribed_and_cleaned() {
    imports(
        "mailchimp-subscribed.csv",
        "Mailchimp export (subscribed)",
        &["no status column -> active: 2"],
        &[("ann@example.com", "active")],
    )
    .await;
    imports(
        "mailchimp-unsubscribed.csv",
        "Mailchimp export (unsubscribed)",
        &["no status column -> unsubscribed: 1"],
        &[("bob@example.com", "unsubscribed")],
    )
    .await;
    imports(
        "mailchimp-cleaned.csv",
        "Mailchimp export (cleaned)",
        &["no status column -> bounced: 1"],
        &[("dan@example.com", "bounced")],
    )
    .await;
}

#[tokio::test]
async fn mailchimp_files_imported_one_after_another_keep_each_state() {
    // The way an operator moves a Mailchimp audience: the three files in turn.
    let lp = lp();
    for f in [
        "mailchimp-subscribed.csv",
        "mailchimp-unsubscribed.csv",
        "mailchimp-cleaned.csv",
    ] {
        lp.ok(&["subscribers", "import", fixture(f).to_str().unwrap()])
            .await;
    }
    let ann = subscriber(&lp, "ann@example.com").await;
    assert_eq!(ann["name"], "Ann Archer");
    assert_eq!(ann["tags"], serde_json::json!(["rust", "weekly"]));
    let statuses = lp.statuses().await;
    assert_eq!(statuses["bob@example.com"], "unsubscribed");
    assert_eq!(statuses["dan@example.com"], "bounced");
}

#[tokio::test]
async fn substack_skips_deletion_placeholders() {
    imports(
        "substack.csv",
        "Substack export",
        &[
            "email_disabled \"false\" -> active: 2",
            "email_disabled \"true\" -> unsubscribed: 1",
            "1 skipped: Substack's placeholders for deleted readers (@deletion-request.substack.com)",
        ],
        &[
            ("ann@example.com", "active"),
            ("bob@example.com", "unsubscribed"),
        ],
    )
    .await;
}

#[tokio::test]
async fn buttondown_types_and_semicolon_tags() {
    let lp = imports(
        "buttondown.csv",
        "Buttondown export",
        &[
            "subscriber_type \"regular\" -> active: 2",
            "subscriber_type \"spammy\" -> unsubscribed: 1",
            "subscriber_type \"undeliverable\" -> bounced: 1",
        ],
        &[
            ("ann@example.com", "active"),
            ("bob@example.com", "unsubscribed"),
            ("cat@example.com", "pending"),
            ("dan@example.com", "bounced"),
            ("eve@example.com", "unsubscribed"),
            ("fay@example.com", "active"),
        ],
    )
    .await;
    let ann = subscriber(&lp, "ann@example.com").await;
    assert_eq!(ann["tags"], serde_json::json!(["rust", "weekly"]));
}

#[tokio::test]
async fn beehiiv() {
    imports(
        "beehiiv.csv",
        "beehiiv export",
        &[
            "status \"inactive\" -> unsubscribed: 1",
            "status \"invalid\" -> bounced: 1",
        ],
        &[
            ("ann@example.com", "active"),
            ("bob@example.com", "unsubscribed"),
            ("cat@example.com", "pending"),
            ("dan@example.com", "bounced"),
        ],
    )
    .await;
}

#[tokio::test]
async fn kit() {
    imports(
        "kit.csv",
        "Kit (ConvertKit) export",
        &[
            "state \"cancelled\" -> unsubscribed: 1",
            "state \"inactive\" -> pending: 1",
        ],
        &[
            ("ann@example.com", "active"),
            ("bob@example.com", "unsubscribed"),
            ("cat@example.com", "pending"),
            ("dan@example.com", "bounced"),
            ("eve@example.com", "complained"),
        ],
    )
    .await;
}

#[tokio::test]
async fn keila_with_its_data_as_attributes() {
    let lp = imports(
        "keila.csv",
        "Keila export",
        &["status \"unreachable\" -> bounced: 1"],
        &[
            ("ann@example.com", "active"),
            ("bob@example.com", "unsubscribed"),
            ("dan@example.com", "bounced"),
        ],
    )
    .await;
    let ann = subscriber(&lp, "ann@example.com").await;
    assert_eq!(ann["attributes"], serde_json::json!({"plan": "free"}));
    assert_eq!(ann["name"], "Ann Archer");
}

#[tokio::test]
async fn ghost_with_labels_as_tags() {
    let lp = imports(
        "ghost.csv",
        "Ghost members export",
        &[
            "subscribed_to_emails \"true\" -> active: 2",
            "subscribed_to_emails \"false\" -> unsubscribed: 1",
        ],
        &[
            ("ann@example.com", "active"),
            ("bob@example.com", "unsubscribed"),
        ],
    )
    .await;
    let ann = subscriber(&lp, "ann@example.com").await;
    assert_eq!(ann["tags"], serde_json::json!(["rust", "weekly"]));
    assert_eq!(ann["name"], "Ann Archer");
}

#[tokio::test]
async fn listmonk() {
    imports(
        "listmonk.csv",
        "listmonk export",
        &[
            "status \"disabled\" -> unsubscribed: 1",
            "status \"blocklisted\" -> unsubscribed: 1",
        ],
        &[
            ("ann@example.com", "active"),
            ("bob@example.com", "unsubscribed"),
            ("eve@example.com", "unsubscribed"),
        ],
    )
    .await;
}

#[tokio::test]
async fn an_unknown_state_is_a_rejected_line_not_a_guess() {
    let lp = lp();
    std::fs::write(
        lp.path("octopus.csv"),
        "Email address,First name,Status\nann@example.com,Ann,SUBSCRIBED\nzed@example.com,Zed,FROZEN\n",
    )
    .unwrap();
    let out = lp
        .run(&["subscribers", "import", "octopus.csv", "--strict"])
        .await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(
            "line 3: status \"FROZEN\" is not a state known for this EmailOctopus export"
        ),
        "{stderr}"
    );
    assert!(lp.subscribers().await.is_empty(), "--strict wrote nothing");
}
