//! Runs each test body against a fresh SQLite file and a fresh PostgreSQL
//! database of its own (so tests run in parallel), made by the test kit.

#![allow(dead_code)]

use std::future::Future;

use letterpress_store::{
    ImportRow, IssueToPublish, NewSubscriber, PendingOutcome, PublishOutcome, SignupLimits, Store,
    SubscriberEmail, SubscriberName, UpsertMode,
};
use letterpress_testkit::PgDb;

/// One database a test body runs against.
pub(crate) struct TestDb {
    /// URL a test may connect to (several times, for several pools).
    pub url: String,
    /// "sqlite" or "postgres", for assertion messages.
    pub label: &'static str,
}

impl TestDb {
    /// A new store on this database, migrated.
    pub(crate) async fn store(&self) -> Store {
        let store = Store::connect(&self.url).await.expect("connect");
        store.migrate().await.expect("migrate");
        store
    }
}

/// Runs `body` on SQLite, then on a PostgreSQL database of its own (the
/// kit's [`PgDb`]: skipped, saying so, without `TEST_DATABASE_URL`, unless
/// `LP_TEST_REQUIRE` names `postgres`).
pub(crate) async fn each_backend<F, Fut>(body: F)
where
    F: Fn(TestDb) -> Fut,
    Fut: Future<Output = ()>,
{
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("nested").join("store.db");
    body(TestDb {
        url: format!("sqlite://{}", path.display()),
        label: "sqlite",
    })
    .await;

    if let Some(db) = PgDb::create().await {
        body(TestDb {
            url: db.url.clone(),
            label: "postgres",
        })
        .await;
    }
}

/// A parsed address.
pub(crate) fn email(s: &str) -> SubscriberEmail {
    SubscriberEmail::parse(s).expect("valid address")
}

/// A new active subscriber.
pub(crate) fn sub(s: &str) -> NewSubscriber {
    NewSubscriber::new(email(s), "test")
}

/// Import rows for `n` generated addresses `user{i}@example.com`.
pub(crate) fn generated(n: usize, name: &str) -> impl Iterator<Item = ImportRow> + Send + 'static {
    let name = name.to_string();
    (0..n).map(move |i| ImportRow {
        line: i as u64 + 2,
        result: Ok(NewSubscriber {
            name: SubscriberName::parse(&format!("{name} {i}")).unwrap(),
            ..sub(&format!("user{i}@example.com"))
        }),
    })
}

/// Seeds `n` active subscribers.
pub(crate) async fn seed(store: &Store, n: usize) {
    let s = store
        .import(generated(n, "Reader"), UpsertMode::Normal, false)
        .await
        .expect("seed import");
    assert_eq!(s.added, n as u64);
}

/// An issue published by a test: its id and how many deliveries it queued.
pub(crate) struct Published {
    /// The issue's row id.
    pub id: i64,
    /// Deliveries queued by this publish.
    pub queued: u64,
}

/// Publishes the issue `slug` (hash `h`), due at `now`, as a publisher
/// that read the store first would.
pub(crate) async fn publish(
    store: &Store,
    slug: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> Published {
    let seen = store.get_issue(slug).await.expect("read issue");
    let issue = IssueToPublish {
        slug,
        content_hash: "h",
        subject: "S",
        body: "{}",
    };
    match store
        .publish_issue(&issue, seen.as_ref().map(|i| i.content_hash.as_str()), now)
        .await
        .expect("publish")
    {
        PublishOutcome::Queued { issue_id, queued } => Published {
            id: issue_id,
            queued,
        },
        PublishOutcome::Stale => panic!("nobody else publishes in this test"),
    }
}

/// Runs statements on the test database outside the store (schema changes
/// a test makes to provoke a failure).
pub(crate) async fn execute(db: &TestDb, statements: &[&str]) {
    letterpress_testkit::sql::execute(&db.url, statements).await;
}

/// A double opt-in signup with no per-address limit: what the store found.
pub(crate) async fn signup(
    store: &Store,
    email: &SubscriberEmail,
    name: Option<&str>,
) -> PendingOutcome {
    signup_mail(store, email, name).await.outcome
}

/// [`signup`], with the confirmation mail it asked for, if any.
pub(crate) async fn signup_mail(
    store: &Store,
    email: &SubscriberEmail,
    name: Option<&str>,
) -> letterpress_store::Signup {
    let unlimited = SignupLimits {
        min_interval: std::time::Duration::ZERO,
        per_day: u32::MAX,
    };
    store
        .request_confirmation(email, name, "form", unlimited, chrono::Utc::now())
        .await
        .expect("signup")
}
