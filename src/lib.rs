//! The letterpress application: configuration, the command line and the
//! wiring of the library crates (composer, store, sender, server).
//!
//! `main.rs` only parses arguments and calls [`run`]; everything a test or
//! another front end might want lives here.

pub mod cli;
mod commands;
pub mod config;
mod dns;
mod files;
mod imap;
mod linkcheck;
pub mod logging;
pub mod memory;
mod shutdown;
mod wiring;

use std::process::ExitCode;

use cli::{Cli, Command};
use config::Config;

/// What an error says, each cause once: `anyhow`'s `{:#}` joins every
/// cause of the chain, and many errors (ours with `{source}` in their
/// message, io and TLS errors wrapped by their libraries) already repeat
/// their cause, which then printed twice or three times in a row.
pub fn error_message(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        let text = text.trim();
        if text.is_empty() || out.contains(text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(text);
    }
    out
}

/// Runs one command. `Ok` carries the exit status for commands that end
/// "successfully" with a non-zero status (e.g. `check` finding errors).
pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    // `init` writes the config: it reads none.
    if let Command::Init(args) = &cli.command {
        return commands::init::init(args);
    }
    let config = Config::load(cli.config.as_deref())?;
    match cli.command {
        Command::Render { issue, out, json } => {
            commands::render::render(&config, &issue, out, json)
        }
        Command::Check {
            issue,
            links,
            warn_only,
            link_timeout,
        } => {
            let links = links.then_some(commands::render::LinkOptions {
                warn_only,
                timeout: link_timeout,
            });
            commands::render::check(&config, &issue, links).await
        }
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
        // Handled above, before the config is read.
        Command::Init(args) => commands::init::init(&args),
        Command::Dkim(cli::DkimCommand::Keygen {
            selector,
            ed25519,
            force,
        }) => commands::dkim::keygen(&config, selector.as_deref(), ed25519, force),
        Command::Dns { check, resolver } => {
            commands::dns::dns(&config, check, resolver.as_deref()).await
        }
        Command::Doctor { resolver } => {
            commands::doctor::doctor(&config, resolver.as_deref()).await
        }
        Command::Bounces => commands::bounces::bounces(&config).await,
        Command::Backup { file } => commands::backup::backup(&config, &file).await,
        Command::ComposeStored { issue } => commands::compose::compose_stored(&config, &issue),
    }
}
