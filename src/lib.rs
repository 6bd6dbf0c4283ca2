//! The letterpress application: configuration, the command line and the
//! wiring of the library crates (composer, store, sender, server).
//!
//! `main.rs` only parses arguments and calls [`run`]; everything a test or
//! another front end might want lives here.

pub mod cli;
mod commands;
pub mod config;
pub mod logging;
mod shutdown;
mod wiring;

use std::process::ExitCode;

use cli::{Cli, Command};
use config::Config;

/// Runs one command. `Ok` carries the exit status for commands that end
/// "successfully" with a non-zero status (e.g. `check` finding errors).
pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let config = Config::load(cli.config.as_deref())?;
    match cli.command {
        Command::Render { issue, out, json } => {
            commands::render::render(&config, &issue, out, json)
        }
        Command::Check { issue } => commands::render::check(&config, &issue),
        Command::Subscribers(cmd) => commands::subscribers::run(&config, cmd).await,
        Command::Send(args) => commands::send::send(&config, args).await,
        Command::Status { slug, json } => {
            commands::send::status(&config, slug.as_deref(), json).await
        }
        Command::RetryFailed { slug } => commands::send::retry_failed(&config, &slug).await,
        Command::Worker => commands::worker::worker(&config).await,
        Command::Serve => commands::serve::serve(&config).await,
        Command::Migrate => {
            let store = wiring::open_store(&config).await?;
            eprintln!(
                "migrations applied to {}",
                letterpress_core::redact_url(&config.database.url)
            );
            store.close().await;
            Ok(ExitCode::SUCCESS)
        }
    }
}
