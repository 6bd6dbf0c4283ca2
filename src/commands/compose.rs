//! Composing an issue in a child process, for `serve`'s scheduler.
//!
//! The composer is bounded (nesting, includes, sizes), but it runs
//! third-party parsers over files anyone with write access to the issues
//! folder controls, and a stack overflow or an allocation failure is not a
//! panic: it aborts the whole process. In `serve` that would take the HTTP
//! server and the worker down, and the start-up catch-up would abort again
//! on every restart. So the scheduler runs `letterpress compose-stored
//! ISSUE` (a hidden subcommand of this same binary), which writes the
//! issue's stored form ([`SendableIssue::to_stored`], versioned) on stdout;
//! the parent reads at most [`MAX_STORED_BYTES`] of it, waits at most
//! `schedule.compose_timeout`, and takes any other end (an error, a crash,
//! a kill) for "this issue did not compose": it is logged and not queued.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use letterpress_composer::SendableIssue;
use letterpress_publish::schedule::ComposeIssue;
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::config::Config;
use crate::wiring;

/// The most a child may write on stdout. An issue expands to at most 2 MB
/// of Markdown; its HTML and text, escaped as JSON, stay well below this.
const MAX_STORED_BYTES: usize = 64 * 1024 * 1024;

/// How much of the child's stderr is kept for the error message (the end).
const STDERR_TAIL: usize = 16 * 1024;

/// `letterpress compose-stored ISSUE`: the child's side.
pub(crate) fn compose_stored(config: &Config, issue: &Path) -> anyhow::Result<ExitCode> {
    let composer = wiring::composer(config)?;
    let composed = composer.compose_file(issue)?;
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(composed.issue.to_stored().as_bytes())
        .and_then(|()| stdout.flush())
        .context("writing the composed issue on stdout")?;
    Ok(ExitCode::SUCCESS)
}

/// The parent's side: composes each issue in a fresh child process.
pub(crate) struct ChildComposer {
    exe: PathBuf,
    config: Option<PathBuf>,
    timeout: Duration,
}

impl ChildComposer {
    /// Children of this very binary, reading the configuration `config` was
    /// read from (and the same environment).
    pub(crate) fn new(config: &Config) -> anyhow::Result<ChildComposer> {
        Ok(ChildComposer {
            exe: std::env::current_exe().context("finding the letterpress binary")?,
            config: config.file.clone(),
            timeout: config.schedule.compose_timeout,
        })
    }

    async fn run(&self, path: &Path) -> anyhow::Result<SendableIssue> {
        let mut cmd = tokio::process::Command::new(&self.exe);
        if let Some(file) = &self.config {
            cmd.arg("--config").arg(file);
        }
        cmd.arg("compose-stored")
            .arg(path)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd
            .spawn()
            .with_context(|| format!("starting the composer process {}", self.exe.display()))?;
        let stdout = child.stdout.take().context("the child's stdout")?;
        let stderr = child.stderr.take().context("the child's stderr")?;
        // stderr is drained on its own, so a child that writes much of it
        // never blocks on a full pipe.
        let stderr = tokio::spawn(tail(stderr, STDERR_TAIL));
        let finished = tokio::time::timeout(self.timeout, async {
            let mut out = Vec::new();
            stdout
                .take(MAX_STORED_BYTES as u64 + 1)
                .read_to_end(&mut out)
                .await
                .context("reading the composer process's output")?;
            if out.len() > MAX_STORED_BYTES {
                bail!(
                    "the composer process wrote more than {} MB",
                    MAX_STORED_BYTES / (1024 * 1024)
                );
            }
            let status = child
                .wait()
                .await
                .context("waiting for the composer process")?;
            Ok((status, out))
        })
        .await;
        let (status, out) = match finished {
            Ok(Ok(done)) => done,
            Ok(Err(e)) => {
                let _ = child.kill().await;
                return Err(e);
            }
            Err(_) => {
                let _ = child.kill().await;
                bail!(
                    "composing took longer than schedule.compose_timeout ({}); the composer process was killed",
                    humantime::format_duration(self.timeout)
                );
            }
        };
        let said = stderr.await.unwrap_or_default();
        let last = said
            .lines()
            .rev()
            .map(str::trim)
            .find(|l| !l.is_empty())
            .unwrap_or("")
            .trim_start_matches("error: ")
            .to_string();
        if status.success() {
            let stored = String::from_utf8(out)
                .map_err(|_| anyhow!("the composer process wrote something that is not UTF-8"))?;
            return SendableIssue::from_stored(&stored)
                .context("reading what the composer process wrote");
        }
        if let Some(code) = status.code() {
            if last.is_empty() {
                bail!("the composer process exited with status {code}");
            }
            bail!("{last}");
        }
        #[cfg(unix)]
        {
            use std::os::unix::process::ExitStatusExt;
            if let Some(signal) = status.signal() {
                bail!(
                    "the composer process crashed (signal {signal}){}",
                    if last.is_empty() {
                        String::new()
                    } else {
                        format!(": {last}")
                    }
                );
            }
        }
        bail!("the composer process ended abnormally ({status})")
    }
}

impl ComposeIssue for ChildComposer {
    type Error = String;

    async fn compose(&self, path: &Path) -> Result<SendableIssue, String> {
        self.run(path).await.map_err(|e| crate::error_message(&e))
    }
}

/// Reads `r` to its end, keeping the last `keep` bytes (lossy UTF-8).
async fn tail(mut r: impl AsyncRead + Unpin, keep: usize) -> String {
    let mut kept: Vec<u8> = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = r.read(&mut buf).await {
        if n == 0 {
            break;
        }
        kept.extend_from_slice(&buf[..n]);
        if kept.len() > 2 * keep {
            kept.drain(..kept.len() - keep);
        }
    }
    if kept.len() > keep {
        kept.drain(..kept.len() - keep);
    }
    String::from_utf8_lossy(&kept).into_owned()
}
