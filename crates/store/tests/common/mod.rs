//! Runs each test body against a fresh SQLite file and, when
//! `TEST_DATABASE_URL` is set, a fresh PostgreSQL database of its own (so
//! tests run in parallel).

#![allow(dead_code)]

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};

use letterpress_store::{
    ImportRow, IssueToPublish, NewSubscriber, PublishOutcome, Store, SubscriberEmail, UpsertMode,
};
use sqlx::Connection;

/// The parts of sqlx used here, from the driver crates the store depends
/// on (it does not use sqlx's facade crate: see `src/db.rs`).
mod sqlx {
    pub(crate) use sqlx_core::connection::Connection;
    pub(crate) use sqlx_core::query::query;
    pub(crate) use sqlx_core::raw_sql::raw_sql;
    pub(crate) use sqlx_core::sql_str::AssertSqlSafe;
    pub(crate) use sqlx_postgres::PgConnection;
    pub(crate) use sqlx_sqlite::SqliteConnection;
}

/// One database a test body runs against.
pub struct TestDb {
    /// URL a test may connect to (several times, for several pools).
    pub url: String,
    /// "sqlite" or "postgres", for assertion messages.
    pub label: &'static str,
}

impl TestDb {
    /// A new store on this database, migrated.
    pub async fn store(&self) -> Store {
        let store = Store::connect(&self.url).await.expect("connect");
        store.migrate().await.expect("migrate");
        store
    }
}

static SEQ: AtomicU64 = AtomicU64::new(0);

fn unique_name() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "lp_store_test_{}_{}_{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed),
        nanos
    )
}

/// The URL with its database name replaced.
fn with_database(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map(|i| i + 3).unwrap_or(0);
    let prefix = match base[scheme_end..].find('/') {
        Some(i) => &base[..scheme_end + i],
        None => base,
    };
    match query {
        Some(q) => format!("{prefix}/{db}?{q}"),
        None => format!("{prefix}/{db}"),
    }
}

/// Runs `body` on SQLite, then on PostgreSQL if `TEST_DATABASE_URL` is set.
pub async fn each_backend<F, Fut>(body: F)
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

    match std::env::var("TEST_DATABASE_URL") {
        Ok(admin) if !admin.trim().is_empty() => {
            let name = unique_name();
            let mut conn = sqlx::PgConnection::connect(&admin)
                .await
                .expect("connect to TEST_DATABASE_URL");
            // The name is generated here from digits and underscores: an
            // identifier cannot be a bound parameter.
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                .execute(&mut conn)
                .await
                .expect("create test database");
            body(TestDb {
                url: with_database(&admin, &name),
                label: "postgres",
            })
            .await;
            let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
            )))
            .execute(&mut conn)
            .await;
        }
        _ => {
            // Straight to stderr, past the test harness's output capture, so
            // a run without PostgreSQL says so.
            use std::io::Write;
            let _ = writeln!(
                std::io::stderr(),
                "skipped postgres: TEST_DATABASE_URL not set"
            );
        }
    }
}

/// A parsed address.
pub fn email(s: &str) -> SubscriberEmail {
    SubscriberEmail::parse(s).expect("valid address")
}

/// A new active subscriber.
pub fn sub(s: &str) -> NewSubscriber {
    NewSubscriber::new(email(s), "test")
}

/// Import rows for `n` generated addresses `user{i}@example.com`.
pub fn generated(n: usize, name: &str) -> impl Iterator<Item = ImportRow> + Send + 'static {
    let name = name.to_string();
    (0..n).map(move |i| ImportRow {
        line: i as u64 + 2,
        result: Ok(NewSubscriber {
            name: Some(format!("{name} {i}")),
            ..sub(&format!("user{i}@example.com"))
        }),
    })
}

/// Seeds `n` active subscribers.
pub async fn seed(store: &Store, n: usize) {
    let s = store
        .import(generated(n, "Reader"), UpsertMode::Normal, false)
        .await
        .expect("seed import");
    assert_eq!(s.added, n as u64);
}

/// An issue published by a test: its id and how many deliveries it queued.
pub struct Published {
    /// The issue's row id.
    pub id: i64,
    /// Deliveries queued by this publish.
    pub queued: u64,
}

/// Publishes the issue `slug` (hash `h`), due at `now`, as a publisher
/// that read the store first would.
pub async fn publish(store: &Store, slug: &str, now: chrono::DateTime<chrono::Utc>) -> Published {
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
pub async fn execute(db: &TestDb, statements: &[&str]) {
    if db.label == "sqlite" {
        let mut conn = sqlx::SqliteConnection::connect(&db.url)
            .await
            .expect("connect");
        for s in statements {
            sqlx::raw_sql(sqlx::AssertSqlSafe(*s))
                .execute(&mut conn)
                .await
                .expect(s);
        }
    } else {
        let mut conn = sqlx::PgConnection::connect(&db.url).await.expect("connect");
        for s in statements {
            sqlx::raw_sql(sqlx::AssertSqlSafe(*s))
                .execute(&mut conn)
                .await
                .expect(s);
        }
    }
}
