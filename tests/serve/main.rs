//! `letterpress serve` end to end: the built binary on a free port, a real
//! HTTP client, a real SQLite file (or PostgreSQL) and the kit's scripted
//! SMTP relay.
//!
//! Covers RFC 8058 one-click unsubscribe and the page behind the link,
//! signed webhooks, double opt-in signup, health, metrics and JSON logs,
//! the graceful stop on SIGTERM, unsubscribes under load during a send,
//! scheduled delivery, all of it behind Debian's nginx running the
//! documented site file, and the signup embed for a static site (CORS,
//! redirect, honeypot), in headless Chromium too.

#![cfg(unix)]

mod browser;
mod embed;
mod http_limits;
mod load;
mod observability;
mod providers;
mod proxy;
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
