//! The test kit every letterpress test binary uses: a new test is a few
//! lines of scenario over it, not a new harness.
//!
//! - [`Lp`]: a throwaway installation (temp dir, SQLite file or a
//!   PostgreSQL database, configuration by `LETTERPRESS_*` variables only)
//!   that runs the built binary as a user runs it, and [`Served`], a running
//!   `serve`, `send` or `worker` with its stderr lines and signals.
//! - [`SmtpServer`]: the scripted relay that can defer, drop, stall, hold
//!   replies and refuse a repeated EHLO.
//! - [`Postfix`]: Debian's postfix as a private relay on loopback, with a
//!   certificate from the test's own CA, STARTTLS required on one port and
//!   implicit TLS on another; it relays to a [`SmtpServer`].
//! - [`PgDb`]: a PostgreSQL database of its own per test, and [`sql`] to
//!   run statements on a test database from outside letterpress.
//! - [`quoted_printable::decode`]: a strict RFC 2045 decoder.
//! - [`Dovecot`]: a private IMAP server (a bounce mailbox) on loopback,
//!   TLS with a CA of the test's own; messages delivered into its Maildir.
//! - [`Dkimpy`]: an independent DKIM verifier (Python's dkimpy, with PyNaCl
//!   for ed25519-sha256), one verdict per signature with [`Verdicts`].
//! - [`Nginx`]: Debian's nginx as a private instance on loopback, in front
//!   of a `serve`, with a certificate made for the run.
//! - [`Browser`]: headless Chromium through chromedriver (fantoccini).
//! - [`client`], [`eventually`], and the header and token helpers of [`mail`].
//! - [`require`]: the `LP_TEST_REQUIRE` switch. When something a test needs
//!   is missing, [`require::missing`] decides, for every test alike, whether
//!   the test fails or says `skipped:` and returns.
//!
//! The binary's path (`env!("CARGO_BIN_EXE_letterpress")`) is known only to
//! the root package's tests, so they hand it to [`Lp::new`].

#![warn(missing_docs)]

mod browser;
mod dkim;
mod dns;
mod dovecot;
mod install;
pub mod mail;
mod nginx;
mod postfix;
mod postgres;
mod proxy;
pub mod quoted_printable;
pub mod require;
mod smtp;
pub mod sql;
mod wait;

pub use browser::{Browser, chromium};
pub use dkim::{Dkimpy, Verdicts};
pub use dns::DnsServer;
pub use dovecot::{Dovecot, IMAP_PASSWORD, IMAP_USER, Stored};
pub use install::{Lp, NEWSLETTER, PUBLIC_URL, SECRET, Served, WEBHOOK_SECRET};
pub use mail::{header, list_unsubscribe_token, text_body, token_after};
pub use nginx::Nginx;
pub use postfix::{Postfix, Session};
pub use postgres::PgDb;
pub use proxy::TcpProxy;
pub use require::Dependency;
pub use smtp::{Behavior, Received, SmtpServer};
pub use wait::{WAIT, client, eventually};

use std::path::PathBuf;

/// The root of the letterpress checkout (where `templates/` is).
pub fn repo() -> PathBuf {
    let kit = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    kit.parent()
        .and_then(|crates| crates.parent())
        .expect("the kit lives in crates/testkit")
        .to_path_buf()
}

/// The corpus of real newsletter issues (`../shared/corpus`, beside the
/// checkout), or `None` after [`require::missing`] said why.
pub fn corpus() -> Option<PathBuf> {
    let dir = repo().join("../shared/corpus");
    if dir.is_dir() {
        return Some(dir);
    }
    require::missing(
        Dependency::Corpus,
        &format!("the corpus is not at {}", dir.display()),
    );
    None
}
