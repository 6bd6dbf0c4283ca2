//! Statements run on a test database from outside letterpress, as an
//! operator's `sqlite3` or `psql` would: schema changes a test makes to
//! provoke a failure, and the kit's own database bookkeeping.
//!
//! Through sqlx's driver crates, as the store uses them (not the `sqlx`
//! facade, which would bring back the second RustCrypto generation the
//! store avoids; see `crates/store/src/db.rs`).

use sqlx_core::connection::Connection;
use sqlx_core::sql_str::AssertSqlSafe;

pub(crate) use sqlx_postgres::PgConnection;

/// Runs `statements` in order on the database at `url` (`sqlite://…` or
/// `postgres://…`), each as it is; panics naming the one that fails.
pub async fn execute(url: &str, statements: &[&str]) {
    if url.starts_with("sqlite:") {
        let mut conn = sqlx_sqlite::SqliteConnection::connect(url)
            .await
            .unwrap_or_else(|e| panic!("open {url}: {e}"));
        for s in statements {
            sqlx_core::raw_sql::raw_sql(AssertSqlSafe(*s))
                .execute(&mut conn)
                .await
                .unwrap_or_else(|e| panic!("{s}: {e}"));
        }
        let _ = conn.close().await;
    } else {
        let mut conn = PgConnection::connect(url)
            .await
            .unwrap_or_else(|e| panic!("connect to the test database: {e}"));
        for s in statements {
            sqlx_core::raw_sql::raw_sql(AssertSqlSafe(*s))
                .execute(&mut conn)
                .await
                .unwrap_or_else(|e| panic!("{s}: {e}"));
        }
        let _ = conn.close().await;
    }
}

/// The first column of the first row `query` returns with `$1` bound to
/// `arg`, as an integer (`None` for no row or NULL).
pub async fn query_i64(url: &str, query: &str, arg: i64) -> Option<i64> {
    if url.starts_with("sqlite:") {
        let mut conn = sqlx_sqlite::SqliteConnection::connect(url)
            .await
            .unwrap_or_else(|e| panic!("open {url}: {e}"));
        let v: Option<Option<i64>> =
            sqlx_core::query_scalar::query_scalar(AssertSqlSafe(query.to_string()))
                .bind(arg)
                .fetch_optional(&mut conn)
                .await
                .unwrap_or_else(|e| panic!("{query}: {e}"));
        let _ = conn.close().await;
        v.flatten()
    } else {
        let mut conn = PgConnection::connect(url)
            .await
            .unwrap_or_else(|e| panic!("connect to the test database: {e}"));
        let v: Option<Option<i64>> =
            sqlx_core::query_scalar::query_scalar(AssertSqlSafe(query.to_string()))
                .bind(arg)
                .fetch_optional(&mut conn)
                .await
                .unwrap_or_else(|e| panic!("{query}: {e}"));
        let _ = conn.close().await;
        v.flatten()
    }
}

/// One statement of the kit's own, on an open PostgreSQL connection.
pub(crate) async fn pg(conn: &mut PgConnection, statement: String) -> Result<(), sqlx_core::Error> {
    sqlx_core::query::query(AssertSqlSafe(statement))
        .execute(conn)
        .await
        .map(|_| ())
}

/// Ends the server process of every connection to the PostgreSQL database
/// at `url` that names itself `application_name`, and waits (up to 5 s
/// each) until it is gone: what a client sees of a server restart or an
/// operator's `pg_terminate_backend`, for that connection alone. Returns
/// how many it ended.
pub async fn terminate_backends(url: &str, application_name: &str) -> i64 {
    let mut conn = PgConnection::connect(url)
        .await
        .unwrap_or_else(|e| panic!("connect to the test database: {e}"));
    let ended: i64 = sqlx_core::query_scalar::query_scalar(
        "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid, 5000)) FROM pg_stat_activity \
         WHERE datname = current_database() AND application_name = $1 AND pid <> pg_backend_pid()",
    )
    .bind(application_name)
    .fetch_one(&mut conn)
    .await
    .unwrap_or_else(|e| panic!("end the {application_name:?} connections: {e}"));
    let _ = conn.close().await;
    ended
}
