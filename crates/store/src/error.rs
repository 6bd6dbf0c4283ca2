//! The one error type of the store.

use crate::db;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The URL names no backend this store speaks.
    #[error("unsupported database URL {0:?}: expected sqlite://PATH or postgres://…")]
    UnsupportedUrl(String),
    /// The directory that should hold the SQLite file could not be created.
    #[error("could not create the database directory {path}: {source}")]
    CreateDir {
        /// The directory.
        path: std::path::PathBuf,
        /// What the file system said.
        source: std::io::Error,
    },
    /// The SQLite file could not be created.
    #[error("could not create the database file {path}: {source}")]
    CreateFile {
        /// The file.
        path: std::path::PathBuf,
        /// What the file system said.
        source: std::io::Error,
    },
    /// The database refused or failed a statement, or could not be reached.
    #[error("database error: {0}")]
    Database(#[from] db::Error),
    /// An embedded migration failed; the schema is as it was before it.
    #[error("migration {version} ({description}) failed: {source}")]
    MigrationFailed {
        /// The migration's number.
        version: i64,
        /// Its name.
        description: &'static str,
        /// What the database said.
        source: db::Error,
    },
    /// The database has a migration this build does not know: it was
    /// migrated by a newer letterpress, whose schema this one would misread.
    #[error(
        "the database was migrated by a newer letterpress (migration {0} is unknown to this one); run that version or newer"
    )]
    NewerSchema(i64),
    /// An applied migration's file changed since it was applied.
    #[error("migration {0} differs from the one applied to this database (checksum mismatch)")]
    ChangedMigration(i64),
    /// A migration was recorded as begun and not finished.
    #[error("migration {0} was left half-applied; restore a backup or repair it by hand")]
    DirtyMigration(i64),
    /// [`crate::Store::forget`] was called on a store without a suppression
    /// key ([`crate::Store::with_suppression_keys`]): it could not record
    /// the address in a form later checks recognise.
    #[error("cannot forget an address: no suppression key is set")]
    NoSuppressionKey,
    /// A stored value does not decode (e.g. an unknown status written by hand).
    #[error("corrupt stored value: {0}")]
    Corrupt(String),
    /// The status reader's own SQLite connection (`Store::status_reader`)
    /// failed a lookup.
    #[error("database error (status reader): {0}")]
    StatusReader(#[from] rusqlite::Error),
}

impl StoreError {
    /// Whether the database could not be reached or went away (a
    /// PostgreSQL restart, a network cut, a pool that timed out waiting for
    /// a connection): the statement did not run, and the same call may
    /// succeed once the server is back. Anything else (a constraint, a
    /// corrupt value, a schema problem) would fail again.
    pub fn is_unavailable(&self) -> bool {
        let StoreError::Database(e) = self else {
            return false;
        };
        match e {
            db::Error::Io(_) | db::Error::PoolTimedOut | db::Error::Tls(_) => true,
            db::Error::Database(d) => d.code().is_some_and(|code| unavailable_sqlstate(&code)),
            _ => false,
        }
    }
}

/// PostgreSQL's SQLSTATEs for a server that is going away or not yet
/// there: class 08 (connection exception) and 57P01-57P03 (admin shutdown,
/// crash shutdown, cannot connect now: the server is starting).
fn unavailable_sqlstate(code: &str) -> bool {
    code.starts_with("08") || matches!(code, "57P01" | "57P02" | "57P03")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn which_failures_are_an_unavailable_database() {
        let io = || std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset");
        for (error, unavailable) in [
            (StoreError::Database(db::Error::Io(io())), true),
            (StoreError::Database(db::Error::PoolTimedOut), true),
            (StoreError::Database(db::Error::PoolClosed), false),
            (StoreError::Database(db::Error::RowNotFound), false),
            (StoreError::Corrupt("x".into()), false),
            (StoreError::NoSuppressionKey, false),
        ] {
            assert_eq!(error.is_unavailable(), unavailable, "{error}");
        }
        for (code, unavailable) in [
            ("08006", true),
            ("08001", true),
            ("57P01", true),
            ("57P03", true),
            ("23505", false),
            ("40001", false),
        ] {
            assert_eq!(unavailable_sqlstate(code), unavailable, "{code}");
        }
    }
}
