//! A PostgreSQL database of its own for each test, so tests run in
//! parallel on one server.

use sqlx_core::connection::Connection;

use crate::sql::{PgConnection, pg};

use crate::require::{self, Dependency};

/// The variable that names the server: the URL of a database that a user
/// who may create databases connects to, e.g.
/// `postgres://postgres@127.0.0.1:5432/test`.
pub const TEST_DATABASE_URL: &str = "TEST_DATABASE_URL";

/// A fresh database, dropped (with its connections) when this is dropped,
/// whether the test passed or not.
pub struct PgDb {
    admin: String,
    name: String,
    /// The database's URL, to hand to letterpress or to `Store::connect`.
    pub url: String,
}

impl PgDb {
    /// Creates `lp_test_<pid>_<random>` on the server `TEST_DATABASE_URL`
    /// names. Without that variable the dependency is missing
    /// ([`require::missing`]: the test fails under `LP_TEST_REQUIRE`,
    /// else it says `skipped:` and gets `None`). A server that is named but
    /// cannot be used fails the test whatever the switch says: naming it
    /// asked for it.
    pub async fn create() -> Option<PgDb> {
        let admin = match std::env::var(TEST_DATABASE_URL) {
            Ok(u) if !u.trim().is_empty() => u,
            _ => {
                require::missing(Dependency::Postgres, "TEST_DATABASE_URL is not set");
                return None;
            }
        };
        Some(Self::create_on(&admin).await)
    }

    /// [`PgDb::create`] on the server of `admin` (a URL as
    /// `TEST_DATABASE_URL` takes), for a caller that names its server some
    /// other way (the bench's `LP_BENCH_POSTGRES`). Panics when the server
    /// cannot be used.
    pub async fn create_on(admin: &str) -> PgDb {
        let admin = admin.to_string();
        let mut url = url::Url::parse(&admin).unwrap_or_else(|e| {
            panic!("{TEST_DATABASE_URL}={admin} is not a URL ({e}); e.g. postgres://postgres@127.0.0.1:5432/test")
        });
        let shown = {
            let mut u = url.clone();
            if u.password().is_some() {
                let _ = u.set_password(Some("***"));
            }
            u.to_string()
        };
        let mut conn = PgConnection::connect(&admin).await.unwrap_or_else(|e| {
            panic!(
                "PostgreSQL at {TEST_DATABASE_URL}={shown} does not answer: {e}\n\
                     start it, point {TEST_DATABASE_URL} at one that does \
                     (e.g. postgres://postgres@127.0.0.1:5432/test), \
                     or unset it to skip the PostgreSQL tests"
            )
        });
        let name = format!(
            "lp_test_{}_{:08x}",
            std::process::id(),
            rand::random::<u32>()
        );
        // The name is made here of digits, letters and underscores: an
        // identifier cannot be a bound parameter.
        pg(&mut conn, format!("CREATE DATABASE {name}"))
            .await
            .unwrap_or_else(|e| panic!("create a test database on {shown}: {e}"));
        let _ = conn.close().await;
        url.set_path(&format!("/{name}"));
        PgDb {
            admin,
            name,
            url: url.to_string(),
        }
    }
}

impl Drop for PgDb {
    fn drop(&mut self) {
        // Drop runs inside the test's runtime, which cannot be blocked on:
        // the DROP gets a thread and a small runtime of its own.
        let (admin, name) = (self.admin.clone(), self.name.clone());
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime to drop the test database");
            runtime.block_on(async move {
                if let Ok(mut conn) = PgConnection::connect(&admin).await {
                    let _ = pg(
                        &mut conn,
                        format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
                    )
                    .await;
                    let _ = conn.close().await;
                }
            });
        });
        let _ = dropped.join();
    }
}
