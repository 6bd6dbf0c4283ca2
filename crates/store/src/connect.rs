//! Opening the database, migrations, and the plumbing every module shares:
//! the backend switch and how a write transaction starts.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use crate::db::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions, Postgres};
use crate::db::sqlite::{
    Sqlite, SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteSynchronous,
};
use crate::db::{Connection, Database, Encode, QueryBuilder, Transaction, Type};
use hmac::{KeyInit, Mac};

use crate::StoreError;
use crate::db;

/// Which database a [`Store`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// An SQLite file (the embedded default).
    Sqlite,
    /// A PostgreSQL server.
    Postgres,
}

#[derive(Debug, Clone)]
pub(crate) enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// The subscriber store. Cheap to clone: clones share the connection pool.
#[derive(Clone)]
pub struct Store {
    pub(crate) pool: Pool,
    /// Keys of the HMAC that identifies forgotten addresses, the current one
    /// first, no key twice; empty until [`Store::with_suppression_keys`].
    pub(crate) suppression_keys: Arc<[Box<[u8]>]>,
    /// The SQLite database's file, for connections of the store's own
    /// beside the pool ([`Store::status_reader`]); `None` on PostgreSQL and
    /// for an in-memory SQLite database.
    pub(crate) sqlite_file: Option<std::path::PathBuf>,
}

impl std::fmt::Debug for Store {
    // By hand: the suppression key is a secret and stays out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("backend", &self.backend())
            .field("suppression_keys", &self.suppression_keys.len())
            .finish()
    }
}

/// Runs `$body` with `$pool` bound to the backend's pool. The body is
/// compiled once per backend, so it can use the same sqlx calls on
/// `SqlitePool` and `PgPool`; SQL that differs is chosen with `match` instead.
macro_rules! with_pool {
    ($store:expr, |$pool:ident| $body:expr) => {
        match &$store.pool {
            $crate::connect::Pool::Sqlite($pool) => $body,
            $crate::connect::Pool::Postgres($pool) => $body,
        }
    };
}
pub(crate) use with_pool;

/// How a transaction that will write starts on each backend.
pub(crate) trait BeginWrite {
    type Db: Database;
    fn begin_write(
        &self,
    ) -> impl Future<Output = Result<Transaction<'static, Self::Db>, db::Error>> + Send;
    /// [`BeginWrite::begin_write`] for a large batch of writes.
    fn begin_bulk_write(
        &self,
    ) -> impl Future<Output = Result<Transaction<'static, Self::Db>, db::Error>> + Send;
    /// [`BeginWrite::begin_write`] for a transaction that queues deliveries
    /// for subscribers it selects (publishing an issue).
    ///
    /// `deliveries.subscriber_id` has no foreign key on PostgreSQL (its
    /// per-row checks were most of a large enqueue's cost), so there the
    /// transaction holds the queue lock shared: any number of enqueues run
    /// together, and a subscriber's deletion ([`BeginWrite::begin_delete`])
    /// waits for them, and they for it. SQLite has one writer at a time.
    fn begin_enqueue(
        &self,
    ) -> impl Future<Output = Result<Transaction<'static, Self::Db>, db::Error>> + Send;
    /// [`BeginWrite::begin_write`] for a transaction that deletes
    /// subscribers: on PostgreSQL it holds the queue lock exclusively, so
    /// that no enqueue started before it can queue a row it deletes (the
    /// enqueue's snapshot would still see it) and every enqueue after it
    /// sees the row gone.
    fn begin_delete(
        &self,
    ) -> impl Future<Output = Result<Transaction<'static, Self::Db>, db::Error>> + Send;
}

/// The key of the advisory lock of [`BeginWrite::begin_enqueue`] ("lpenqueu").
const QUEUE_LOCK_KEY: i64 = 0x6c70_656e_7175_6575;

impl BeginWrite for SqlitePool {
    type Db = Sqlite;
    /// `BEGIN IMMEDIATE` takes the write lock up front, waiting in the busy
    /// handler (busy_timeout) if another writer holds it. A plain (deferred)
    /// `BEGIN` would read first and then try to upgrade to a writer; in WAL
    /// mode that upgrade fails at once with SQLITE_BUSY ("database is
    /// locked") when another connection wrote meanwhile, bypassing the busy
    /// handler, because the transaction's snapshot is stale.
    async fn begin_write(&self) -> Result<Transaction<'static, Sqlite>, db::Error> {
        self.begin_with("BEGIN IMMEDIATE").await
    }

    /// A write transaction on a connection whose page cache is raised to
    /// 32 MiB: bulk imports insert into the email_key index in random order,
    /// and with the small default cache most of those inserts miss. Only
    /// bulk writers pay for the memory (see `SQLITE_CACHE`).
    async fn begin_bulk_write(&self) -> Result<Transaction<'static, Sqlite>, db::Error> {
        let mut tx = self.begin_write().await?;
        db::query("PRAGMA cache_size = -32768")
            .execute(&mut *tx)
            .await?;
        Ok(tx)
    }

    async fn begin_enqueue(&self) -> Result<Transaction<'static, Sqlite>, db::Error> {
        self.begin_write().await
    }

    async fn begin_delete(&self) -> Result<Transaction<'static, Sqlite>, db::Error> {
        self.begin_write().await
    }
}

impl BeginWrite for PgPool {
    type Db = Postgres;
    /// READ COMMITTED: conflicting writers wait on row locks; statements are
    /// written so that what they test in WHERE is re-checked on the newest
    /// row version (an `ON CONFLICT … WHERE`, `FOR UPDATE SKIP LOCKED`).
    async fn begin_write(&self) -> Result<Transaction<'static, Postgres>, db::Error> {
        self.begin().await
    }

    async fn begin_bulk_write(&self) -> Result<Transaction<'static, Postgres>, db::Error> {
        self.begin_write().await
    }

    /// The lock is taken by the transaction's first statement: READ
    /// COMMITTED takes each statement's snapshot when it starts, so the
    /// statements after it see every deletion committed before.
    async fn begin_enqueue(&self) -> Result<Transaction<'static, Postgres>, db::Error> {
        let mut tx = self.begin_write().await?;
        db::query("SELECT pg_advisory_xact_lock_shared($1)")
            .bind(QUEUE_LOCK_KEY)
            .execute(&mut *tx)
            .await?;
        Ok(tx)
    }

    async fn begin_delete(&self) -> Result<Transaction<'static, Postgres>, db::Error> {
        let mut tx = self.begin_write().await?;
        db::query("SELECT pg_advisory_xact_lock($1)")
            .bind(QUEUE_LOCK_KEY)
            .execute(&mut *tx)
            .await?;
        Ok(tx)
    }
}

/// The page cache of an SQLite connection: SQLite's default (2000 KiB).
const SQLITE_CACHE: &str = "-2000";

/// How long an SQLite connection waits for another writer before giving up.
/// Long, because writers here are short batches and a busy error means a
/// lost write to the operator.
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a PostgreSQL connection may sit idle before it is pinged on its
/// way out of the pool.
const PING_IF_IDLE_FOR: Duration = Duration::from_secs(1);

impl Store {
    /// Opens the database named by `url`: `sqlite://PATH` (the file, 0600,
    /// and its directory, 0700, are created on first use; WAL journal,
    /// synchronous=NORMAL, foreign keys, a 30 s busy timeout) or
    /// `postgres://…`/`postgresql://…`.
    /// Does not migrate: call [`Store::migrate`].
    pub async fn connect(url: &str) -> Result<Store, StoreError> {
        let mut sqlite_file = None;
        let pool = if url.starts_with("sqlite:") {
            let options = SqliteConnectOptions::from_str(url)?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .foreign_keys(true)
                .busy_timeout(SQLITE_BUSY_TIMEOUT)
                // SQLite's default page cache (about 2 MiB) per connection: the
                // pool's connections each keep a full cache, and a send must
                // stay within its memory budget whatever the list size. Bulk
                // imports raise it on their own connection (begin_bulk_write).
                .pragma("cache_size", SQLITE_CACHE)
                .pragma("temp_store", "memory")
                // Checkpoint every ~40 MiB of WAL instead of ~4 MiB: a bulk import
                // rewrites the same index pages in every batch, and each checkpoint
                // copies them back and fsyncs.
                .pragma("wal_autocheckpoint", "10000");
            let file = options.get_filename();
            // `file:` names an in-memory database (or a URI sqlx passes on).
            if !file.as_os_str().to_string_lossy().starts_with("file:") {
                private_database_file(file)?;
                sqlite_file = Some(file.to_path_buf());
            }
            // SQLite takes one writer at a time; four connections keep readers
            // from queueing behind it without a page cache and thread each for
            // connections that would only wait for the write lock.
            let pool = SqlitePoolOptions::new()
                .max_connections(4)
                // No ping before each use: an SQLite connection is a file in
                // this process and cannot have been dropped by a peer, and the
                // ping is a round trip to the connection's thread on every
                // query (two of a delivery's seven).
                .test_before_acquire(false)
                .connect_with(options)
                .await?;
            Pool::Sqlite(pool)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let options = PgConnectOptions::from_str(url)?;
            // One connection made by hand first: the pool's own connect
            // retries until its acquire timeout (30 s) and then says only
            // "pool timed out", hiding why (connection refused, a wrong
            // password, no such database).
            PgConnection::connect_with(&options).await?.close().await?;
            let pool = PgPoolOptions::new()
                .max_connections(8)
                // A ping only before a connection that sat idle: sqlx's
                // ping before every use is a round trip per query, and a
                // delivery's queries (claim, status gate, outcomes) are
                // batched so that round trips are what they cost. A hot
                // connection the server dropped this very second fails its
                // next query, which the worker rides out; one that sat idle
                // (the HTTP server's, after a PostgreSQL restart) is pinged
                // and replaced, so an unsubscribe is not the query that
                // finds it broken.
                .test_before_acquire(false)
                .before_acquire(|conn, meta| {
                    Box::pin(async move {
                        if meta.idle_for > PING_IF_IDLE_FOR {
                            conn.ping().await?;
                        }
                        Ok(true)
                    })
                })
                .connect_with(options)
                .await?;
            Pool::Postgres(pool)
        } else {
            return Err(StoreError::UnsupportedUrl(letterpress_core::redact_url(
                url,
            )));
        };
        Ok(Store {
            pool,
            suppression_keys: Arc::new([]),
            sqlite_file,
        })
    }

    /// Sets the keys of the HMAC-SHA256 that identifies forgotten addresses:
    /// `current`, the key to give [`Store::forget`], and `previous`, keys it
    /// was given before a rotation. Adds, imports and [`Store::create_pending`]
    /// refuse an address whose hash is stored under any of them; without
    /// keys they cannot recognise forgotten addresses.
    ///
    /// A hash cannot be moved to a new key (the address is gone), so an
    /// address forgotten under a key is recognised only while that key is
    /// listed: dropping a retired key from `previous` lets every address
    /// forgotten under it be added again. The binary passes `server.secret`
    /// and `server.previous_secrets`.
    pub fn with_suppression_keys(mut self, current: &[u8], previous: &[&[u8]]) -> Store {
        let mut keys: Vec<Box<[u8]>> = Vec::with_capacity(1 + previous.len());
        for key in std::iter::once(current).chain(previous.iter().copied()) {
            // A key listed twice would only cost a second hash per lookup.
            if !keys.iter().any(|known| **known == *key) {
                keys.push(key.into());
            }
        }
        self.suppression_keys = keys.into();
        self
    }

    /// The hashes `email_key` (an address already lower-cased) has under
    /// each suppression key, current first: the address was forgotten if
    /// `suppressed_hashes` holds any of them.
    pub(crate) fn suppression_hashes<'a>(
        &'a self,
        email_key: &'a str,
    ) -> impl Iterator<Item = String> + 'a {
        self.suppression_keys
            .iter()
            .map(move |key| suppression_hash(key, email_key))
    }

    /// Applies the embedded migrations of the backend (idempotent).
    pub async fn migrate(&self) -> Result<(), StoreError> {
        crate::migrate::run(&self.pool).await
    }

    /// Which backend this store uses.
    pub fn backend(&self) -> Backend {
        match self.pool {
            Pool::Sqlite(_) => Backend::Sqlite,
            Pool::Postgres(_) => Backend::Postgres,
        }
    }

    /// Checks that the database answers.
    pub async fn ping(&self) -> Result<(), StoreError> {
        with_pool!(self, |p| {
            db::query("SELECT 1").execute(p).await?;
        });
        Ok(())
    }

    /// Writes a consistent copy of an SQLite database to `path`, while
    /// others may be writing (`VACUUM INTO` reads one snapshot). The file is
    /// created first, empty and readable by its owner only: it holds the
    /// subscriber list. PostgreSQL is backed up with `pg_dump` instead.
    pub async fn backup_into(&self, path: &std::path::Path) -> Result<(), StoreError> {
        let Pool::Sqlite(p) = &self.pool else {
            return Err(StoreError::UnsupportedUrl(
                "backup_into needs SQLite; use pg_dump for PostgreSQL".into(),
            ));
        };
        let created = {
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            options.open(path)
        };
        created.map_err(|source| StoreError::CreateDir {
            path: path.to_path_buf(),
            source,
        })?;
        db::query("VACUUM INTO $1")
            .bind(path.to_string_lossy().into_owned())
            .execute(p)
            .await?;
        Ok(())
    }

    /// Closes every connection; waits for those in use to come back.
    pub async fn close(&self) {
        with_pool!(self, |p| p.close().await)
    }
}

/// Creates the SQLite file's directory (0700) and the file itself (0600,
/// empty: SQLite takes an empty file for an empty database) unless they
/// exist, whatever the umask: they hold the subscriber list, and the token
/// secret is generated next to the file. SQLite gives its `-wal` and `-shm`
/// files the database file's mode.
///
/// Existing ones keep their modes (an operator may have chosen them, e.g.
/// for a backup group; the directory may be any folder of theirs), with a
/// warning when others may read an existing database file.
fn private_database_file(file: &std::path::Path) -> Result<(), StoreError> {
    if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder
            .create(dir)
            .map_err(|source| StoreError::CreateDir {
                path: dir.to_path_buf(),
                source,
            })?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(file) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            warn_if_shared(file);
            Ok(())
        }
        Err(source) => Err(StoreError::CreateFile {
            path: file.to_path_buf(),
            source,
        }),
    }
}

/// Warns when users other than the owner may read or write the database.
fn warn_if_shared(file: &std::path::Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(file)
            && meta.is_file()
            && meta.permissions().mode() & 0o077 != 0
        {
            tracing::warn!(
                path = %file.display(),
                "the database is open to other users (mode {:o}); `chmod 600 {}` makes it private",
                meta.permissions().mode() & 0o777,
                file.display()
            );
        }
    }
    #[cfg(not(unix))]
    let _ = file;
}

/// HMAC-SHA256(key, lower-cased address), hex: the only trace a forgotten
/// address leaves.
pub(crate) fn suppression_hash(key: &[u8], email_key: &str) -> String {
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key).expect("HMAC takes any key");
    mac.update(email_key.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// `{head} suppressed_hashes WHERE hash IN (…)` with `hashes` bound, where
/// `head` is static SQL such as `SELECT hash FROM` or `DELETE FROM`. The
/// caller keeps the list within the backends' bound-parameter limits.
pub(crate) fn suppressed_hashes_in<'h, DB>(
    head: &'static str,
    hashes: impl IntoIterator<Item = &'h str>,
) -> QueryBuilder<DB>
where
    DB: Database,
    for<'e> &'h str: Encode<'e, DB> + Type<DB>,
{
    let mut qb = QueryBuilder::new(head);
    qb.push(" suppressed_hashes WHERE hash IN (");
    let mut list = qb.separated(", ");
    for hash in hashes {
        list.push_bind(hash);
    }
    qb.push(")");
    qb
}
