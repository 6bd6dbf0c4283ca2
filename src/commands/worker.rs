//! `letterpress worker`: the delivery worker alone, for as many machines
//! or processes as share the database (PostgreSQL).

use std::process::ExitCode;

use anyhow::Context;
use letterpress_sender::Until;

use crate::config::Config;
use crate::{shutdown, wiring};

/// Runs the delivery worker until SIGTERM or Ctrl-C, then finishes the
/// messages in flight and gives back the rest of its claims.
pub(crate) async fn worker(config: &Config) -> anyhow::Result<ExitCode> {
    let store = wiring::open_store(config).await?;
    let worker = wiring::queue_worker(config, &store)?;
    eprintln!("worker running; Ctrl-C or SIGTERM stops it after the messages in flight");
    let result = worker.run(Until::Stopped, shutdown::on_signal()).await;
    store.close().await;
    result.context("worker")?;
    Ok(ExitCode::SUCCESS)
}
