//! The schema migrations, embedded in the binary, and the runner that
//! applies them.
//!
//! Why not sqlx's migrator: its `migrate` feature (and the `macros` it
//! comes with) pins a second generation of the RustCrypto hashes (sha2
//! 0.10, beside the 0.11 that sqlx's PostgreSQL driver itself uses), and
//! its proc-macro is a large part of a clean build. What it does for us is
//! small and is reproduced here faithfully: the same `_sqlx_migrations`
//! table, the same SHA-384 checksums of the same files, so a database
//! migrated by an earlier letterpress (through sqlx) is recognised as it
//! is, and one migrated by a later letterpress is refused rather than
//! misread.
//!
//! Each migration runs in its own transaction with its bookkeeping row, so
//! a failure leaves the schema as it was before that migration. On
//! PostgreSQL the run holds an advisory lock, so that several workers
//! starting together migrate once.

use std::time::Instant;

use crate::db::{Connection, Executor};
use sha2::{Digest, Sha384};

use crate::StoreError;
use crate::connect::Pool;
use crate::db;

/// One embedded migration.
struct Migration {
    /// Its number, from the file name (`0002_issue_body.sql` → 2).
    version: i64,
    /// Its name, from the file name with underscores as spaces.
    description: &'static str,
    /// The file's text, run as it is.
    sql: &'static str,
    /// SQLite only: run with foreign keys off, as SQLite's procedure for
    /// rebuilding a table requires (dropping the old table with them on
    /// would apply `ON DELETE` to every row that refers to it). The
    /// references are checked before the migration commits.
    foreign_keys_off: bool,
}

macro_rules! migration {
    ($version:expr, $description:expr, $file:expr) => {
        migration!($version, $description, $file, false)
    };
    ($version:expr, $description:expr, $file:expr, $foreign_keys_off:expr) => {
        Migration {
            version: $version,
            description: $description,
            sql: include_str!(concat!("../../../migrations/", $file)),
            foreign_keys_off: $foreign_keys_off,
        }
    };
}

const SQLITE: &[Migration] = &[
    migration!(1, "initial", "sqlite/0001_initial.sql"),
    migration!(2, "issue body", "sqlite/0002_issue_body.sql"),
    migration!(3, "token bindings", "sqlite/0003_token_bindings.sql", true),
    migration!(4, "bounce events", "sqlite/0004_bounce_events.sql"),
];

const POSTGRES: &[Migration] = &[
    migration!(1, "initial", "postgres/0001_initial.sql"),
    migration!(2, "issue body", "postgres/0002_issue_body.sql"),
    migration!(3, "token bindings", "postgres/0003_token_bindings.sql"),
    migration!(4, "bounce events", "postgres/0004_bounce_events.sql"),
];

/// The bookkeeping table, as sqlx creates it on each backend.
const SQLITE_TABLE: &str = "CREATE TABLE IF NOT EXISTS _sqlx_migrations (
    version BIGINT PRIMARY KEY,
    description TEXT NOT NULL,
    installed_on TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
    success BOOLEAN NOT NULL,
    checksum BLOB NOT NULL,
    execution_time BIGINT NOT NULL
)";
const POSTGRES_TABLE: &str = "CREATE TABLE IF NOT EXISTS _sqlx_migrations (
    version BIGINT PRIMARY KEY,
    description TEXT NOT NULL,
    installed_on TIMESTAMPTZ NOT NULL DEFAULT now(),
    success BOOLEAN NOT NULL,
    checksum BYTEA NOT NULL,
    execution_time BIGINT NOT NULL
)";

/// The key of the advisory lock held while migrating PostgreSQL ("lpmigrat").
const LOCK_KEY: i64 = 0x6c70_6d69_6772_6174;

/// SHA-384 of the file, as sqlx computes it.
fn checksum(sql: &str) -> Vec<u8> {
    Sha384::digest(sql.as_bytes()).to_vec()
}

/// Checks what the database has applied against what this build knows,
/// and returns the migrations still to apply.
fn pending(
    known: &'static [Migration],
    applied: &[(i64, Vec<u8>, bool)],
) -> Result<Vec<&'static Migration>, StoreError> {
    for (version, sum, success) in applied {
        if !success {
            return Err(StoreError::DirtyMigration(*version));
        }
        match known.iter().find(|m| m.version == *version) {
            None => return Err(StoreError::NewerSchema(*version)),
            Some(m) if checksum(m.sql) != *sum => {
                return Err(StoreError::ChangedMigration(*version));
            }
            Some(_) => {}
        }
    }
    Ok(known
        .iter()
        .filter(|m| !applied.iter().any(|(v, _, _)| *v == m.version))
        .collect())
}

fn failed(m: &Migration) -> impl FnOnce(db::Error) -> StoreError + '_ {
    move |source| StoreError::MigrationFailed {
        version: m.version,
        description: m.description,
        source,
    }
}

/// Applies the pending migrations of the store's backend (idempotent).
pub(crate) async fn run(pool: &Pool) -> Result<(), StoreError> {
    // One connection for the whole run: the lock and the table belong to it.
    match pool {
        Pool::Sqlite(p) => {
            let mut conn = p.acquire().await?;
            conn.execute(SQLITE_TABLE).await?;
            let applied: Vec<(i64, Vec<u8>, bool)> = db::query_as(
                "SELECT version, checksum, success FROM _sqlx_migrations ORDER BY version",
            )
            .fetch_all(&mut *conn)
            .await?;
            for m in pending(SQLITE, &applied)? {
                if m.foreign_keys_off {
                    // A no-op inside a transaction: it must come before BEGIN.
                    conn.execute("PRAGMA foreign_keys = OFF").await?;
                }
                let applied = apply_sqlite(&mut conn, m).await;
                if m.foreign_keys_off {
                    // The pool's connections keep foreign keys on, whatever happened.
                    conn.execute("PRAGMA foreign_keys = ON").await?;
                }
                applied?;
                tracing::info!(version = m.version, description = m.description, "migrated");
            }
        }
        Pool::Postgres(p) => {
            let mut conn = p.acquire().await?;
            db::query("SELECT pg_advisory_lock($1)")
                .bind(LOCK_KEY)
                .execute(&mut *conn)
                .await?;
            let result = async {
                conn.execute(POSTGRES_TABLE).await?;
                let applied: Vec<(i64, Vec<u8>, bool)> = db::query_as(
                    "SELECT version, checksum, success FROM _sqlx_migrations ORDER BY version",
                )
                .fetch_all(&mut *conn)
                .await?;
                for m in pending(POSTGRES, &applied)? {
                    let started = Instant::now();
                    let mut tx = conn.begin().await?;
                    db::raw_sql(db::AssertSqlSafe(m.sql))
                        .execute(&mut *tx)
                        .await
                        .map_err(failed(m))?;
                    record(&mut *tx, m, started).await?;
                    tx.commit().await.map_err(failed(m))?;
                    tracing::info!(version = m.version, description = m.description, "migrated");
                }
                Ok::<(), StoreError>(())
            }
            .await;
            // Released whatever happened: the connection goes back to the pool.
            db::query("SELECT pg_advisory_unlock($1)")
                .bind(LOCK_KEY)
                .execute(&mut *conn)
                .await?;
            result?;
        }
    }
    Ok(())
}

/// Applies one migration to SQLite in its own transaction, checking the
/// foreign keys before it commits when they were off.
async fn apply_sqlite(
    conn: &mut db::sqlite::SqliteConnection,
    m: &'static Migration,
) -> Result<(), StoreError> {
    let started = Instant::now();
    let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;
    db::raw_sql(db::AssertSqlSafe(m.sql))
        .execute(&mut *tx)
        .await
        .map_err(failed(m))?;
    if m.foreign_keys_off {
        let broken: Vec<(String, i64)> =
            db::query_as("SELECT \"table\", rowid FROM pragma_foreign_key_check")
                .fetch_all(&mut *tx)
                .await
                .map_err(failed(m))?;
        if let Some((table, rowid)) = broken.first() {
            return Err(StoreError::MigrationFailed {
                version: m.version,
                description: m.description,
                source: db::Error::Protocol(format!(
                    "{} rows would break a foreign key (first: {table} rowid {rowid})",
                    broken.len()
                )),
            });
        }
    }
    record(&mut *tx, m, started).await?;
    tx.commit().await.map_err(failed(m))?;
    Ok(())
}

/// The bookkeeping row of `m`, written in the migration's own transaction.
async fn record<'c, E>(executor: E, m: &Migration, started: Instant) -> Result<(), StoreError>
where
    E: Executor<'c>,
    i64: db::Encode<'c, E::Database> + db::Type<E::Database>,
    &'c str: db::Encode<'c, E::Database> + db::Type<E::Database>,
    bool: db::Encode<'c, E::Database> + db::Type<E::Database>,
    Vec<u8>: db::Encode<'c, E::Database> + db::Type<E::Database>,
    <E::Database as db::Database>::Arguments: db::IntoArguments<E::Database>,
{
    let nanos = i64::try_from(started.elapsed().as_nanos()).unwrap_or(i64::MAX);
    db::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES ($1, $2, TRUE, $3, $4)",
    )
    .bind(m.version)
    .bind(m.description)
    .bind(checksum(m.sql))
    .bind(nanos)
    .execute(executor)
    .await
    .map_err(failed(m))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The checksums sqlx's migrator stored for these files in databases
    /// migrated by earlier letterpress builds: they must not change, or
    /// those databases would be refused.
    #[test]
    fn checksums_match_what_sqlx_stored() {
        let hex = |b: Vec<u8>| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
        assert_eq!(
            hex(checksum(SQLITE[0].sql)),
            "3c9f403adc7fd82471a6e203dd582906a7b509c8e1fee789bc465c0c66c1f4964660dd9a14f13d193446e1909c7f8552"
        );
        assert_eq!(
            hex(checksum(POSTGRES[0].sql)),
            "bd516061856d77c44ef778d9f07d45869b4430e63d5e64dba44d6e887f41d3936e470dd7b70626d98eddd8874fa7bff5"
        );
        for m in [&SQLITE[1], &POSTGRES[1]] {
            assert_eq!(
                hex(checksum(m.sql)),
                "11246ba88a35d677c4b39f92e13d8dc669b4488188eb0d93498995cb264a60b8eeba653a93634b774bd186b7e9a6f162"
            );
        }
    }

    #[test]
    fn refuses_what_it_does_not_know_and_applies_only_the_rest() {
        let ok = |v: i64| (v, checksum(SQLITE[(v - 1) as usize].sql), true);
        let versions = |p: Vec<&Migration>| p.iter().map(|m| m.version).collect::<Vec<_>>();
        assert_eq!(versions(pending(SQLITE, &[]).unwrap()), [1, 2, 3, 4]);
        assert_eq!(versions(pending(SQLITE, &[ok(1)]).unwrap()), [2, 3, 4]);
        assert!(
            pending(SQLITE, &[ok(1), ok(2), ok(3), ok(4)])
                .unwrap()
                .is_empty()
        );
        assert!(matches!(
            pending(SQLITE, &[ok(1), (99, vec![0], true)]),
            Err(StoreError::NewerSchema(99))
        ));
        assert!(matches!(
            pending(SQLITE, &[(1, vec![0], true)]),
            Err(StoreError::ChangedMigration(1))
        ));
        assert!(matches!(
            pending(SQLITE, &[(1, checksum(SQLITE[0].sql), false)]),
            Err(StoreError::DirtyMigration(1))
        ));
    }

    #[test]
    fn versions_and_descriptions_follow_the_file_names() {
        for (list, dir) in [(SQLITE, "sqlite"), (POSTGRES, "postgres")] {
            let mut files: Vec<String> = std::fs::read_dir(
                std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("../../migrations")
                    .join(dir),
            )
            .expect("migrations folder")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
            files.sort();
            let listed: Vec<String> = list
                .iter()
                .map(|m| format!("{:04}_{}.sql", m.version, m.description.replace(' ', "_")))
                .collect();
            assert_eq!(
                files, listed,
                "every file in migrations/{dir} is embedded, in order"
            );
        }
    }
}
