//! The statuses of a few subscribers, read as cheaply as the backend
//! allows: the delivery's last look before a message goes, asked for every
//! one or two messages.
//!
//! On PostgreSQL that is a query on the pool ([`Store::subscriber_statuses`]):
//! what it costs is the round trip to the server, which no client-side
//! shortcut removes.
//!
//! On SQLite the database is a file in this process, and the pool's query
//! cost more than the lookup: the hand-off to the pool connection's thread
//! and back, a channel per query and a message per row, the pool's
//! acquire and release (a spawned task), for two or three rows. Measured
//! in the end-to-end bench (issue #11), answering the status gate through
//! the pool was about a third of an unsigned send's CPU. So on SQLite the
//! reader owns one connection of its own, on one thread of its own, with
//! the pool's statement prepared once (rusqlite, over the same bundled
//! SQLite as sqlx's driver): a batch of ids goes to the thread and the rows
//! come back in one reply.
//!
//! Either way each answer comes from a statement that began after the
//! request was made, in a read transaction of its own, so it sees every
//! change committed before the request, by this process or any other (the
//! HTTP server's unsubscribes): the guarantee the status gate gives.

use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use letterpress_core::SubscriberStatus;
use tokio::sync::oneshot;

use crate::issue_body::{SQLITE_STATUSES, decode_statuses, ids_as_json};
use crate::{Store, StoreError};

/// Reads subscribers' statuses; see the module's documentation.
/// [`Store::status_reader`] makes one.
pub struct StatusReader {
    how: How,
}

enum How {
    /// A query on the store's pool.
    Pool(Store),
    /// A request to the reader's own thread and SQLite connection.
    Thread(mpsc::Sender<Request>),
}

/// The ids to read, as [`SQLITE_STATUSES`]'s JSON array, and where the
/// rows go.
struct Request {
    ids: String,
    reply: oneshot::Sender<Result<Vec<(i64, String)>, rusqlite::Error>>,
}

/// As long as the pool's connections wait for a writer (`connect.rs`): a
/// read in WAL mode waits only in rare moments (recovery after a crash),
/// and then should not fail a delivery.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

impl Store {
    /// A reader of subscribers' statuses for the delivery's last look. On a
    /// SQLite file it opens a connection of its own on a thread of its own
    /// (`lp-status`), which ends when the reader is dropped. PostgreSQL, an
    /// in-memory SQLite database (which a second connection would not see)
    /// and a file whose second connection cannot be opened (said in a
    /// warning) are read through the pool.
    pub fn status_reader(&self) -> StatusReader {
        let how = match &self.sqlite_file {
            Some(file) => match start_thread(file) {
                Ok(requests) => How::Thread(requests),
                Err(e) => {
                    tracing::warn!(error = %e, "the status reader reads through the pool");
                    How::Pool(self.clone())
                }
            },
            None => How::Pool(self.clone()),
        };
        StatusReader { how }
    }
}

impl StatusReader {
    /// The status now of each of `ids` that still exists (a forgotten
    /// subscriber's row is gone), read by a statement that began after this
    /// call did.
    pub async fn statuses(&self, ids: &[i64]) -> Result<Vec<(i64, SubscriberStatus)>, StoreError> {
        let requests = match &self.how {
            How::Pool(store) => return store.subscriber_statuses(ids).await,
            How::Thread(requests) => requests,
        };
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let (reply, answer) = oneshot::channel();
        let ids = ids_as_json(ids)?;
        requests
            .send(Request { ids, reply })
            .map_err(|_| StoreError::StatusReaderStopped)?;
        let rows = answer
            .await
            .map_err(|_| StoreError::StatusReaderStopped)??;
        decode_statuses(rows)
    }
}

/// Opens the reader's connection (here, so that a file that cannot be
/// opened is said once by [`Store::status_reader`], not by every lookup)
/// and starts its thread.
fn start_thread(file: &Path) -> Result<mpsc::Sender<Request>, Box<dyn std::error::Error>> {
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
    let (requests, rx) = mpsc::channel::<Request>();
    std::thread::Builder::new()
        .name("lp-status".into())
        .spawn(move || {
            // Ends when every sender is gone: the reader was dropped.
            for request in rx {
                let _ = request.reply.send(lookup(&conn, &request.ids));
            }
        })?;
    Ok(requests)
}

/// One batch: the rows of the ids of the JSON array `ids` that exist, as
/// stored.
fn lookup(conn: &rusqlite::Connection, ids: &str) -> Result<Vec<(i64, String)>, rusqlite::Error> {
    let mut statement = conn.prepare_cached(SQLITE_STATUSES)?;
    let rows = statement.query_map([ids], |row| Ok((row.get(0)?, row.get(1)?)))?;
    rows.collect()
}
