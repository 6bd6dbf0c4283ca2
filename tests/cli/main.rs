//! The operator's command line, driven as a user would: the built binary,
//! a fresh SQLite file per test, and the messages it prints.
//!
//! Covers rendering and linting (issue files and their errors), the
//! configuration's errors, the subscriber commands (import, export,
//! add, list, remove), the modes of the files letterpress creates, and
//! the systemd units docs/deploy.md ships.

mod appearance;
mod check;
mod config;
mod deploy;
mod doctor_relay;
#[cfg(unix)]
mod files;
mod import;
mod import_providers;
mod init;
mod links;
mod render;
mod subscribers;

use std::path::PathBuf;
use std::process::Output;

use letterpress_testkit::Lp;

/// An installation whose content root is the composer's fixture site.
fn lp() -> Lp {
    Lp::new(env!("CARGO_BIN_EXE_letterpress")).with_content_root(&fixtures_site())
}

fn fixtures_site() -> PathBuf {
    letterpress_testkit::repo().join("crates/composer/tests/fixtures/site")
}

/// A fixture issue by file name.
fn issue(name: &str) -> String {
    fixtures_site()
        .join("issues")
        .join(name)
        .display()
        .to_string()
}

/// What a command printed on stderr.
fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}
