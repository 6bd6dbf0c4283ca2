//! The statuses of a few subscribers, read as cheaply as the backend
//! allows: the delivery's last look before a message goes, asked for every
//! one or two messages.
//!
//! On PostgreSQL that is a round trip to the server, on a connection of the
//! reader's own rather than the pool's: the pool's acquire and release (a
//! check before each use, and a task spawned to give the connection back)
//! sat inside every SMTP transaction. Its statement is
//! prepared once on that connection, as sqlx keeps it. The connection is
//! made on the first lookup, dropped on any failure (its state is then
//! unknown), and remade by the next one; a lookup that finds it gone (the
//! server restarted, the network cut) tries once more on a fresh one before
//! it fails, so a connection that died while idle costs no delivery a
//! deferral. The reader retries itself rather than leaving it to the
//! worker's `ride_out`: a failed look defers its message, and a broken
//! idle connection is not an outage. It names itself
//! [`STATUS_READER_APPLICATION`] in `pg_stat_activity`.
//!
//! On SQLite the database is a file in this process, and the pool's query
//! cost more than the lookup: the hand-off to the pool connection's thread
//! and back, a channel per query and a message per row, the pool's
//! acquire and release (a spawned task), for two or three rows. Measured
//! in the end-to-end bench (issue #11), answering the status gate through
//! the pool was about a third of an unsigned send's CPU. So on SQLite the
//! reader owns a connection of its own, with the pool's statement prepared
//! once (rusqlite, over the same bundled SQLite as sqlx's driver), and
//! reads on the calling thread: a lookup of a few rows by primary key takes
//! microseconds, less than a hand-off to another thread and back. With the
//! lookup on a thread of its own instead, every message still waited about
//! 250 µs inside its SMTP transaction on a loaded two-core machine, most of
//! it the wake-ups of that thread and of the event loop after it, while
//! the relay sat idle (issue #11, benches/README.md).
//!
//! In WAL mode a reader waits for a lock only in rare moments (recovery
//! after a crash, a checkpoint that resets the log), so the lookup holds
//! the caller's thread for microseconds. Its busy timeout is short all the
//! same (the caller is the sender's event loop): a lookup that would wait
//! longer fails, and the delivery it was for is deferred and tried again,
//! never sent unchecked.
//!
//! Either way each answer comes from a statement that began after the
//! request was made, in a read transaction of its own, so it sees every
//! change committed before the request, by this process or any other (the
//! HTTP server's unsubscribes): the guarantee the status gate gives.

use std::path::Path;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use letterpress_core::SubscriberStatus;

use crate::connect::Pool;
use crate::db::{
    self,
    postgres::{PgConnectOptions, PgConnection},
};
use crate::issue_body::{SQLITE_STATUSES, decode_statuses, ids_as_json, postgres_statuses};
use crate::{Store, StoreError};

/// The `application_name` of the status reader's PostgreSQL connections, so
/// that an operator looking at `pg_stat_activity` sees what they are.
pub const STATUS_READER_APPLICATION: &str = "letterpress status gate";

/// The longest the reader waits for its PostgreSQL connection to be made
/// (sqlx's connection has no timeout of its own; the pool's is 30 s too).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// Reads subscribers' statuses; see the module's documentation.
/// [`Store::status_reader`] makes one.
pub struct StatusReader {
    how: How,
}

enum How {
    /// A query on the store's pool.
    Pool(Store),
    /// SQLite: a connection of the reader's own, read on the caller's thread.
    Inline(Mutex<rusqlite::Connection>),
    /// PostgreSQL: a connection of the reader's own, made when first needed.
    Own(Box<OwnConnection>),
}

/// The reader's PostgreSQL connection and what it takes to make it again.
struct OwnConnection {
    options: PgConnectOptions,
    /// `None` before the first lookup and after a failed one. Held for one
    /// lookup; a reader answers one query at a time (the gate makes one
    /// reader per query it runs at once), so it is never contended.
    conn: tokio::sync::Mutex<Option<PgConnection>>,
}

/// The longest a lookup holds its caller's thread waiting for a lock (see
/// the module's documentation).
const BUSY_TIMEOUT: Duration = Duration::from_millis(100);

impl Store {
    /// A reader of subscribers' statuses for the delivery's last look. On a
    /// SQLite file it opens a connection of its own, read on the caller's
    /// thread; on PostgreSQL it makes one of its own at its first lookup
    /// (one more connection to the server per reader, beyond the pool's).
    /// An in-memory SQLite database (which a second connection would not
    /// see) and a file whose second connection cannot be opened (said in a
    /// warning) are read through the pool.
    pub fn status_reader(&self) -> StatusReader {
        let how = match (&self.pool, &self.sqlite_file) {
            (Pool::Postgres(p), _) => How::Own(Box::new(OwnConnection {
                options: (*p.connect_options())
                    .clone()
                    .application_name(STATUS_READER_APPLICATION),
                conn: tokio::sync::Mutex::new(None),
            })),
            (Pool::Sqlite(_), Some(file)) => match open(file) {
                Ok(conn) => How::Inline(Mutex::new(conn)),
                Err(e) => {
                    tracing::warn!(error = %e, "the status reader reads through the pool");
                    How::Pool(self.clone())
                }
            },
            (Pool::Sqlite(_), None) => How::Pool(self.clone()),
        };
        StatusReader { how }
    }
}

impl StatusReader {
    /// Whether a lookup is answered on the caller's thread (a SQLite file),
    /// so that one lookup per question costs less than gathering
    /// questions for a shared one.
    pub fn reads_inline(&self) -> bool {
        matches!(self.how, How::Inline(_))
    }

    /// The status now of each of `ids` that still exists (a forgotten
    /// subscriber's row is gone), read by a statement that began after this
    /// call did.
    pub async fn statuses(&self, ids: &[i64]) -> Result<Vec<(i64, SubscriberStatus)>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let conn = match &self.how {
            How::Pool(store) => return store.subscriber_statuses(ids).await,
            How::Own(own) => return own.statuses(ids).await,
            How::Inline(conn) => conn,
        };
        let ids = ids_as_json(ids)?;
        // Held for one lookup, never across an await. A panic mid-lookup
        // leaves the connection as good as before (a statement is reset
        // when its rows are dropped).
        let conn = conn.lock().unwrap_or_else(PoisonError::into_inner);
        let rows = lookup(&conn, &ids)?;
        decode_statuses(rows)
    }
}

impl OwnConnection {
    async fn statuses(&self, ids: &[i64]) -> Result<Vec<(i64, SubscriberStatus)>, StoreError> {
        let mut conn = self.conn.lock().await;
        let first = self.lookup(&mut conn, ids).await;
        let rows = match first {
            Err(e) if e.is_unavailable() => {
                tracing::debug!(error = %e, "the status reader connects again");
                self.lookup(&mut conn, ids).await?
            }
            other => other?,
        };
        decode_statuses(rows)
    }

    /// One query, on the connection in `slot` (made first if there is
    /// none). On any failure the connection is dropped: whatever it was in
    /// the middle of, the next lookup starts on a fresh one.
    async fn lookup(
        &self,
        slot: &mut Option<PgConnection>,
        ids: &[i64],
    ) -> Result<Vec<(i64, String)>, StoreError> {
        let conn = match slot {
            Some(conn) => conn,
            None => slot.insert(self.connect().await?),
        };
        let rows = postgres_statuses(&mut *conn, ids).await;
        if rows.is_err() {
            *slot = None;
        }
        Ok(rows?)
    }

    async fn connect(&self) -> Result<PgConnection, StoreError> {
        use db::Connection as _;
        match tokio::time::timeout(CONNECT_TIMEOUT, PgConnection::connect_with(&self.options)).await
        {
            Ok(conn) => Ok(conn?),
            Err(_) => Err(StoreError::Database(db::Error::Io(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!(
                    "no connection to PostgreSQL within {} s",
                    CONNECT_TIMEOUT.as_secs()
                ),
            )))),
        }
    }
}

/// Opens the reader's connection (at once, so that a file that cannot be
/// opened is said once by [`Store::status_reader`], not by every lookup).
fn open(file: &Path) -> Result<rusqlite::Connection, rusqlite::Error> {
    use rusqlite::OpenFlags;
    // Read-write without create, as the pool opened it (a read-only
    // connection to a WAL database needs its -shm file writable anyway);
    // `query_only` makes sure this one never writes.
    let conn = rusqlite::Connection::open_with_flags(
        file,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.pragma_update(None, "query_only", true)?;
    // Prepared here too, so a schema this build cannot read fails now.
    conn.prepare_cached(SQLITE_STATUSES)?;
    Ok(conn)
}

/// One batch: the rows of the ids of the JSON array `ids` that exist, as
/// stored.
fn lookup(conn: &rusqlite::Connection, ids: &str) -> Result<Vec<(i64, String)>, rusqlite::Error> {
    let mut statement = conn.prepare_cached(SQLITE_STATUSES)?;
    let rows = statement.query_map([ids], |row| Ok((row.get(0)?, row.get(1)?)))?;
    rows.collect()
}
