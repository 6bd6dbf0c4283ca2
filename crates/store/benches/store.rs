//! Store benchmarks: CSV-sized imports and queueing an issue for a big list.
//!
//! `cargo bench -p letterpress-store --bench store`; PostgreSQL runs too when
//! `BENCH_DATABASE_URL` or `TEST_DATABASE_URL` names a server (each run gets
//! fresh databases, dropped afterwards). Flat sampling with 10 samples keeps
//! the whole run to a few minutes: every iteration is a big operation.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chrono::Utc;
use criterion::{Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use letterpress_store::{
    ImportRow, IssueToPublish, NewSubscriber, PublishOutcome, Store, SubscriberEmail,
    SubscriberName, UpsertMode,
};
use sqlx::Connection;

/// The parts of sqlx used here, from the driver crates the store depends
/// on (it does not use sqlx's facade crate: see `src/db.rs`).
mod sqlx {
    pub(crate) use sqlx_core::connection::Connection;
    pub(crate) use sqlx_core::query::query;
    pub(crate) use sqlx_core::sql_str::AssertSqlSafe;
    pub(crate) use sqlx_postgres::PgConnection;
    pub(crate) use sqlx_sqlite::{SqliteConnection, SqlitePool};
    pub(crate) mod sqlite {
        pub(crate) use sqlx_sqlite::SqliteConnectOptions;
    }
}
use tokio::runtime::Runtime;

const IMPORT_ROWS: u64 = 100_000;
const AUDIENCE: u64 = 1_000_000;

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn admin_url() -> Option<String> {
    ["BENCH_DATABASE_URL", "TEST_DATABASE_URL"]
        .iter()
        .filter_map(|k| std::env::var(k).ok())
        .find(|v| !v.trim().is_empty())
}

fn rows() -> Vec<ImportRow> {
    (0..IMPORT_ROWS)
        .map(|i| {
            let mut new = NewSubscriber::new(
                SubscriberEmail::parse(&format!("Reader.{i}@Example{}.com", i % 97)).unwrap(),
                "bench",
            );
            new.name = SubscriberName::parse(&format!("Reader {i}")).unwrap();
            new.tags = vec!["bench".into()];
            ImportRow {
                line: i + 2,
                result: Ok(new),
            }
        })
        .collect()
}

static SEQ: AtomicU64 = AtomicU64::new(0);

/// A fresh PostgreSQL database: (its URL, the admin URL to drop it with, its name).
async fn fresh_pg(admin: &str) -> (String, String) {
    let name = format!(
        "lp_store_bench_{}_{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    );
    let mut conn = sqlx::PgConnection::connect(admin).await.unwrap();
    // Generated identifier: digits and underscores only.
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .unwrap();
    let base = admin.split('?').next().unwrap();
    let cut = base
        .rfind('/')
        .filter(|&i| i > base.find("://").unwrap() + 2);
    let url = format!("{}/{name}", &base[..cut.unwrap_or(base.len())]);
    (url, name)
}

async fn drop_pg(admin: &str, name: &str) {
    let mut conn = sqlx::PgConnection::connect(admin).await.unwrap();
    let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
    )))
    .execute(&mut conn)
    .await;
}

fn import(c: &mut Criterion) {
    let rt = runtime();
    let rows = rows();
    let mut group = c.benchmark_group("import");
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(5))
        .throughput(Throughput::Elements(IMPORT_ROWS));

    group.bench_function("sqlite_100k_new", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let dir = tempfile::tempdir().unwrap();
                    let url = format!("sqlite://{}", dir.path().join("bench.db").display());
                    let store = Store::connect(&url).await.unwrap();
                    store.migrate().await.unwrap();
                    let batch = rows.clone();
                    let start = Instant::now();
                    let s = store
                        .import(batch.into_iter(), UpsertMode::Normal, false)
                        .await
                        .unwrap();
                    total += start.elapsed();
                    assert_eq!(s.added, IMPORT_ROWS);
                    store.close().await;
                }
                total
            })
        })
    });

    match admin_url() {
        None => eprintln!("skipped postgres: BENCH_DATABASE_URL / TEST_DATABASE_URL not set"),
        Some(admin) => {
            group.bench_function("postgres_100k_new", |b| {
                b.iter_custom(|iters| {
                    rt.block_on(async {
                        let mut total = Duration::ZERO;
                        for _ in 0..iters {
                            let (url, name) = fresh_pg(&admin).await;
                            let store = Store::connect(&url).await.unwrap();
                            store.migrate().await.unwrap();
                            let batch = rows.clone();
                            let start = Instant::now();
                            let s = store
                                .import(batch.into_iter(), UpsertMode::Normal, false)
                                .await
                                .unwrap();
                            total += start.elapsed();
                            assert_eq!(s.added, IMPORT_ROWS);
                            store.close().await;
                            drop_pg(&admin, &name).await;
                        }
                        total
                    })
                })
            });
        }
    }
    group.finish();
}

fn enqueue(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("publish_issue");
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(10))
        .throughput(Throughput::Elements(AUDIENCE));

    // SQLite: seed 1,000,000 active subscribers once with a recursive CTE.
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("audience.db").display());
    let (store, issue) = rt.block_on(async {
        let store = Store::connect(&url).await.unwrap();
        store.migrate().await.unwrap();
        let seeder = sqlx::SqlitePool::connect(&url).await.unwrap();
        sqlx::query(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $1) \
             INSERT INTO subscribers (email, email_key, status, created_at, updated_at) \
             SELECT 'user' || i || '@example.com', 'user' || i || '@example.com', 'active', 0, 0 FROM n",
        )
        .bind(AUDIENCE as i64)
        .execute(&seeder)
        .await
        .unwrap();
        seeder.close().await;
        let issue = publish_empty(&store).await;
        (store, issue)
    });
    group.bench_function("sqlite_1m", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    clear_deliveries_sqlite(&url).await;
                    let start = Instant::now();
                    let n = republish(&store, issue).await;
                    total += start.elapsed();
                    assert_eq!(n, AUDIENCE);
                }
                total
            })
        })
    });
    rt.block_on(store.close());

    match admin_url() {
        None => eprintln!("skipped postgres: BENCH_DATABASE_URL / TEST_DATABASE_URL not set"),
        Some(admin) => {
            let (url, name, store, issue) = rt.block_on(async {
                let (url, name) = fresh_pg(&admin).await;
                let store = Store::connect(&url).await.unwrap();
                store.migrate().await.unwrap();
                let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
                sqlx::query(
                    "INSERT INTO subscribers (email, email_key, status, created_at, updated_at) \
                     SELECT 'user' || i || '@example.com', 'user' || i || '@example.com', 'active', 0, 0 \
                     FROM generate_series(1, $1) AS i",
                )
                .bind(AUDIENCE as i64)
                .execute(&mut conn)
                .await
                .unwrap();
                sqlx::query("ANALYZE").execute(&mut conn).await.unwrap();
                let issue = publish_empty(&store).await;
                (url, name, store, issue)
            });
            // A 1,000,000-row INSERT … SELECT takes tens of seconds on a
            // 2-core PostgreSQL (foreign-key triggers, WAL), so criterion's
            // minimum of 10 samples would take minutes: three timed runs,
            // printed.
            let mut runs = Vec::new();
            for _ in 0..3 {
                let elapsed = rt.block_on(async {
                    let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
                    sqlx::query("TRUNCATE deliveries CASCADE")
                        .execute(&mut conn)
                        .await
                        .unwrap();
                    sqlx::query("CHECKPOINT").execute(&mut conn).await.unwrap();
                    let start = Instant::now();
                    let n = republish(&store, issue).await;
                    let elapsed = start.elapsed();
                    assert_eq!(n, AUDIENCE);
                    elapsed
                });
                runs.push(elapsed);
            }
            for (i, d) in runs.iter().enumerate() {
                println!(
                    "publish_issue/postgres_1m run {}: {:.2} s ({:.0} rows/s)",
                    i + 1,
                    d.as_secs_f64(),
                    AUDIENCE as f64 / d.as_secs_f64()
                );
            }
            rt.block_on(async {
                store.close().await;
                drop_pg(&admin, &name).await;
            });
        }
    }
    group.finish();
}

/// Empties the queue between runs, untimed. Foreign keys off on this
/// connection so SQLite can use its truncate optimisation.
const ISSUE: IssueToPublish<'static> = IssueToPublish {
    slug: "bench",
    content_hash: "h",
    subject: "Bench",
    body: "{}",
};

/// Publishes the bench issue for the first time; returns its id.
async fn publish_empty(store: &Store) -> i64 {
    match store.publish_issue(&ISSUE, None, Utc::now()).await.unwrap() {
        PublishOutcome::Queued { issue_id, .. } => issue_id,
        PublishOutcome::Stale => unreachable!("the bench database is new"),
    }
}

/// Publishes the bench issue again (its deliveries were cleared): the
/// whole audience is queued anew. Returns how many.
async fn republish(store: &Store, issue_id: i64) -> u64 {
    match store
        .publish_issue(&ISSUE, Some(ISSUE.content_hash), Utc::now())
        .await
        .unwrap()
    {
        PublishOutcome::Queued {
            issue_id: id,
            queued,
        } if id == issue_id => queued,
        other => panic!("republish: {other:?}"),
    }
}

async fn clear_deliveries_sqlite(url: &str) {
    use std::str::FromStr;
    let options = sqlx::sqlite::SqliteConnectOptions::from_str(url)
        .unwrap()
        .foreign_keys(false)
        .busy_timeout(Duration::from_secs(30));
    let mut conn = sqlx::SqliteConnection::connect_with(&options)
        .await
        .unwrap();
    sqlx::query("DELETE FROM delivery_attempts")
        .execute(&mut conn)
        .await
        .unwrap();
    sqlx::query("DELETE FROM deliveries")
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
}

criterion_group!(benches, import, enqueue);
criterion_main!(benches);
