//! sqlx, through its driver crates rather than its facade.
//!
//! The `sqlx` facade crate turns on `sqlx-core`'s migrator for every user
//! (`sqlx-core = { features = ["migrate"] }` in its manifest), and the
//! migrator pins sha2 0.10 while the PostgreSQL driver uses sha2 0.11: two
//! generations of the RustCrypto hashes in every build. The driver crates
//! alone do not, and the store runs its own migrations (`migrate.rs`). This
//! module re-exports the part of sqlx the store uses, under the names the
//! facade gives them, so the rest of the crate reads like ordinary sqlx.
//! The three crates are pinned to one exact version, as the facade pins
//! them.

pub(crate) use sqlx_core::Error;
pub(crate) use sqlx_core::arguments::IntoArguments;
pub(crate) use sqlx_core::connection::Connection;
pub(crate) use sqlx_core::database::Database;
pub(crate) use sqlx_core::encode::Encode;
pub(crate) use sqlx_core::executor::Executor;
pub(crate) use sqlx_core::from_row::FromRow;
pub(crate) use sqlx_core::query::query;
pub(crate) use sqlx_core::query_as::query_as;
pub(crate) use sqlx_core::query_builder::QueryBuilder;
pub(crate) use sqlx_core::query_scalar::query_scalar;
pub(crate) use sqlx_core::raw_sql::raw_sql;
pub(crate) use sqlx_core::row::Row;
pub(crate) use sqlx_core::sql_str::AssertSqlSafe;
pub(crate) use sqlx_core::transaction::Transaction;
pub(crate) use sqlx_core::types::Type;

/// JSON columns.
pub(crate) mod types {
    pub(crate) use sqlx_core::types::Json;
}

/// The SQLite driver.
pub(crate) mod sqlite {
    pub(crate) use sqlx_sqlite::{
        Sqlite, SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool,
        SqlitePoolOptions, SqliteRow, SqliteSynchronous,
    };
}

/// The PostgreSQL driver.
pub(crate) mod postgres {
    pub(crate) use sqlx_postgres::{
        PgConnectOptions, PgConnection, PgPool, PgPoolOptions, PgRow, Postgres,
    };
}
