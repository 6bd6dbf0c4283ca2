//! The letterpress subscriber store: subscribers, issues and the delivery
//! queue, on SQLite (the embedded default) or PostgreSQL behind one API.
//!
//! [`Store::connect`] picks the backend from the URL at run time. Every
//! statement uses bound parameters; the SQL text is either static or built by
//! [`db::QueryBuilder`] from placeholders only.
//!
//! Design choices that callers may rely on:
//! - every time is stored as unix milliseconds (UTC) in an integer column on
//!   both backends, so queue comparisons are integer compares and both
//!   backends decode rows the same way;
//! - tags and attributes are JSON (TEXT on SQLite, JSONB on PostgreSQL);
//! - forgetting a subscriber deletes the row; deliveries keep their history
//!   through `ON DELETE SET NULL`, unsettled ones are marked skipped;
//! - forgotten addresses are recognised by HMAC-SHA256 under the keys given
//!   to [`Store::with_suppression_keys`]: set them (the binary uses
//!   `server.secret` and `server.previous_secrets`) wherever adds, imports or
//!   signups happen, and pass the current key to [`Store::forget`]; after a
//!   rotation the old key must stay listed, or the addresses forgotten under
//!   it are no longer recognised;
//! - [`Store::stream_subscribers`] is a stream over keyset-paginated pages of
//!   1,000 rows: flat memory, no long-lived read transaction;
//! - multi-statement writes on SQLite start with `BEGIN IMMEDIATE`, so a
//!   transaction never has to upgrade a read lock to a write lock (the one
//!   case where SQLite returns `SQLITE_BUSY` without waiting on the busy
//!   handler).

mod bounces;
mod connect;
mod db;
mod deliveries;
mod error;
mod import;
mod issue_body;
mod issues;
mod migrate;
mod model;
mod seen;
mod status_reader;
mod subscribers;
mod tokens;

pub use connect::{Backend, Store};
pub use error::StoreError;
pub use issues::{IssueToPublish, PublishOutcome};
pub use letterpress_core::{SubscriberEmail, SubscriberName, SubscriberStatus};
pub use model::*;
pub use status_reader::{STATUS_READER_APPLICATION, StatusReader};
pub use tokens::{
    ConfirmOutcome, ConfirmationMail, RowBinding, Signup, SignupLimits, TokenUnsubscribe,
};
