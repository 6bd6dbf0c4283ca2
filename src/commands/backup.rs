//! `letterpress backup FILE`: a consistent copy of the SQLite database,
//! made while `serve` or `send` may be writing (SQLite's `VACUUM INTO`
//! reads one snapshot).

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, bail};

use crate::config::Config;
use crate::wiring;

/// `letterpress backup FILE`.
pub(crate) async fn backup(config: &Config, file: &Path) -> anyhow::Result<ExitCode> {
    if !config.database.url.starts_with("sqlite:") {
        bail!(
            "database.url {} is not SQLite: back PostgreSQL up with pg_dump (see docs/deploy.md)",
            letterpress_core::redact_url(&config.database.url)
        );
    }
    if file.exists() {
        bail!("{} exists; backup writes a new file", file.display());
    }
    let store = wiring::open_store(config).await?;
    let result = store
        .backup_into(file)
        .await
        .with_context(|| format!("backing up into {}", file.display()));
    store.close().await;
    result?;
    let size = std::fs::metadata(file).map(|m| m.len()).unwrap_or(0);
    eprintln!(
        "backed up {} to {} ({} KB)",
        letterpress_core::redact_url(&config.database.url),
        file.display(),
        size / 1024
    );
    Ok(ExitCode::SUCCESS)
}
