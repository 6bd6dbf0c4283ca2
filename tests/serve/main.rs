//! `letterpress serve` end to end: the built binary on a free port, a real
//! HTTP client, a real SQLite file (or PostgreSQL) and the kit's scripted
//! SMTP relay.
//!
//! Covers RFC 8058 one-click unsubscribe and the page behind the link,
//! signed webhooks, double opt-in signup, health, metrics and JSON logs,
//! the graceful stop on SIGTERM, unsubscribes under load during a send, and
//! scheduled delivery.

#![cfg(unix)]

mod http_limits;
mod load;
mod observability;
mod providers;
mod schedule;
mod shutdown;
mod signup;
mod unsubscribe;
mod webhooks;

use letterpress_testkit::Lp;

/// An installation of the binary under test.
fn lp() -> Lp {
    Lp::new(env!("CARGO_BIN_EXE_letterpress"))
}
