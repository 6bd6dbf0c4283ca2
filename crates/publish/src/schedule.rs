//! Scheduled delivery: a crontab line wakes the scheduler, which publishes
//! every issue in `schedule.issues_dir` whose `send_at` has come, that is
//! not a draft and has not been published.
//!
//! "Sent exactly once" rests on the store, not on timing: an issue's slug
//! is unique, and so is a delivery per (issue, subscriber). Two schedulers
//! on one PostgreSQL that wake together both find the issue due, both
//! publish it, and the second publish adds nothing. "Not yet published"
//! is "no issue row with this slug", which holds because a publish records
//! the row and queues the audience in one transaction
//! ([`crate::publish`]): a publish that fails leaves no row, and the next
//! tick tries again.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use letterpress_composer::{Composer, SendableIssue};
use letterpress_store::{Store, StoreError};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::PublishError;

/// Why scheduling failed.
#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    /// `schedule.cron` does not parse.
    #[error("schedule.cron {line:?} is not a crontab line: {reason}")]
    Cron {
        /// The line.
        line: String,
        /// croner's reason.
        reason: String,
    },
    /// `schedule.timezone` is not an IANA zone.
    #[error("schedule.timezone {0:?} is not an IANA time zone (e.g. Europe/Amsterdam)")]
    TimeZone(String),
    /// `schedule.issues_dir` cannot be read.
    #[error("schedule.issues_dir {path}: {source}")]
    Dir {
        /// The folder.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Publishing a due issue failed; it stays due.
    #[error(transparent)]
    Publish(#[from] PublishError),
}

/// A parsed crontab line in a time zone.
#[derive(Debug, Clone)]
pub struct Schedule {
    cron: croner::Cron,
    tz: Tz,
}

impl Schedule {
    /// Parses a 5-field line (`*/5 * * * *`) read in `timezone`, or a
    /// 6-field one whose first field is the second (`*/10 * * * * *`), for
    /// schedules finer than a minute.
    pub fn parse(line: &str, timezone: &str) -> Result<Self, ScheduleError> {
        if !matches!(line.split_whitespace().count(), 5 | 6) {
            return Err(ScheduleError::Cron {
                line: line.into(),
                reason: "expected 5 fields (minute hour day-of-month month day-of-week), \
                         or 6 with the second first"
                    .into(),
            });
        }
        let cron = croner::Cron::from_str(line).map_err(|e| ScheduleError::Cron {
            line: line.into(),
            reason: e.to_string(),
        })?;
        let tz = Tz::from_str(timezone).map_err(|_| ScheduleError::TimeZone(timezone.into()))?;
        Ok(Self { cron, tz })
    }

    /// The first occurrence strictly after `t`.
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron
            .find_next_occurrence(&t.with_timezone(&self.tz), false)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    }
}

/// An issue file whose time has come.
#[derive(Debug, Clone)]
pub struct DueIssue {
    /// The file.
    pub path: PathBuf,
    /// Its slug.
    pub slug: String,
}

/// Issues in `dir` with `send_at <= now`, not drafts, not yet in the store.
/// A file that does not parse is reported and skipped: one broken draft
/// must not hold up the others.
pub async fn due_issues(
    dir: &Path,
    store: &Store,
    now: DateTime<Utc>,
) -> Result<Vec<DueIssue>, ScheduleError> {
    let entries = std::fs::read_dir(dir).map_err(|source| ScheduleError::Dir {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .collect();
    paths.sort();
    let mut due = Vec::new();
    for path in paths {
        let header = match letterpress_composer::read_issue_header(&path) {
            Ok(h) => h,
            Err(e) => {
                tracing::warn!(error = %e, "scheduler: skipping an issue file that does not parse");
                continue;
            }
        };
        let fm = &header.front_matter;
        if fm.draft || fm.send_at.is_none_or(|t| t > now) {
            continue;
        }
        if store.get_issue(&header.slug).await?.is_none() {
            due.push(DueIssue {
                path,
                slug: header.slug,
            });
        }
    }
    Ok(due)
}

/// How the scheduler turns a due issue file into the issue it publishes.
/// [`Composer`] does it in process; `letterpress serve` does it in a child
/// process, so that an issue that crashes the composer cannot take the
/// server down with it.
pub trait ComposeIssue: Sync {
    /// Why an issue did not compose (logged; the issue stays due).
    type Error: std::fmt::Display + Send;

    /// Composes the issue file at `path`.
    fn compose(
        &self,
        path: &Path,
    ) -> impl Future<Output = Result<SendableIssue, Self::Error>> + Send;
}

impl ComposeIssue for Composer {
    type Error = letterpress_composer::ComposeError;

    fn compose(
        &self,
        path: &Path,
    ) -> impl Future<Output = Result<SendableIssue, Self::Error>> + Send {
        std::future::ready(self.compose_file(path).map(|c| c.issue))
    }
}

/// One scheduler pass: publish every due issue. An issue that does not
/// compose is logged and the others still go; a publish that fails ends
/// the pass with its error (the issue stays due for the next pass).
/// Returns each published slug with the deliveries it queued.
pub async fn tick<C: ComposeIssue>(
    dir: &Path,
    composer: &C,
    store: &Store,
) -> Result<Vec<(String, u64)>, ScheduleError> {
    async {
        let mut queued = Vec::new();
        for due in due_issues(dir, store, Utc::now()).await? {
            let issue = match composer.compose(&due.path).await {
                Ok(c) => c,
                Err(e) => {
                    tracing::error!(
                        error = %e,
                        file = %due.path.display(),
                        "scheduler: cannot compose a due issue; it is not queued"
                    );
                    continue;
                }
            };
            // A due issue has no row, so a changed file cannot be refused
            // here unless another publisher got in first; then it is.
            let published = crate::publish_now(store, &issue, false).await?;
            tracing::info!(slug = %issue.slug, queued = published.queued, "scheduled issue queued");
            queued.push((issue.slug, published.queued));
        }
        tracing::debug!(issues = queued.len(), "scheduler tick done");
        Ok(queued)
    }
    .instrument(tracing::info_span!("scheduler_tick"))
    .await
}

/// What the scheduler has done since it started, for a status page or
/// `/metrics` to read while it runs.
#[derive(Debug, Default)]
pub struct TickStats {
    /// Passes that ended without error.
    pub ok: AtomicU64,
    /// Passes that ended with an error (their due issues stay due).
    pub failed: AtomicU64,
    /// Issues published by the scheduler.
    pub published: AtomicU64,
    /// When the last pass ended (unix seconds; 0 before the first).
    pub last_tick_unix: AtomicI64,
}

impl TickStats {
    /// Counts one pass that ended with `result`.
    pub fn record(&self, result: &Result<Vec<(String, u64)>, ScheduleError>) {
        match result {
            Ok(published) => {
                self.ok.fetch_add(1, Ordering::Relaxed);
                self.published
                    .fetch_add(published.len() as u64, Ordering::Relaxed);
            }
            Err(_) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.last_tick_unix
            .store(Utc::now().timestamp(), Ordering::Relaxed);
    }
}

/// Runs `on_tick` once at start (catching up on what came due while the
/// scheduler was down), then at every occurrence of `schedule`, until `stop`.
/// The pass itself is the caller's (usually [`tick`]), so that it decides
/// how a failed pass is reported.
pub async fn run<F, Fut>(schedule: Schedule, stop: CancellationToken, mut on_tick: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()>,
{
    on_tick().await;
    loop {
        let Some(next) = schedule.next_after(Utc::now()) else {
            tracing::warn!("schedule has no next occurrence; scheduler stops");
            return;
        };
        let wait = (next - Utc::now()).to_std().unwrap_or_default();
        tokio::select! {
            _ = tokio::time::sleep(wait) => on_tick().await,
            _ = stop.cancelled() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn next_occurrence_respects_the_time_zone() {
        let s = Schedule::parse("0 9 * * 1", "Europe/Amsterdam").unwrap();
        // Sunday 2026-11-22 12:00 UTC -> Monday 09:00 Amsterdam (UTC+1) = 08:00 UTC.
        let t = Utc.with_ymd_and_hms(2026, 11, 22, 12, 0, 0).unwrap();
        assert_eq!(
            s.next_after(t),
            Some(Utc.with_ymd_and_hms(2026, 11, 23, 8, 0, 0).unwrap())
        );
    }

    #[test]
    fn a_sixth_field_counts_seconds() {
        let s = Schedule::parse("*/10 * * * * *", "UTC").unwrap();
        let t = Utc.with_ymd_and_hms(2026, 11, 22, 12, 0, 3).unwrap();
        assert_eq!(
            s.next_after(t),
            Some(Utc.with_ymd_and_hms(2026, 11, 22, 12, 0, 10).unwrap())
        );
        // Five fields still mean minutes: the next whole minute.
        let m = Schedule::parse("* * * * *", "UTC").unwrap();
        assert_eq!(
            m.next_after(t),
            Some(Utc.with_ymd_and_hms(2026, 11, 22, 12, 1, 0).unwrap())
        );
    }

    #[test]
    fn bad_lines_and_zones_name_the_key() {
        assert!(
            Schedule::parse("* * *", "UTC")
                .unwrap_err()
                .to_string()
                .contains("schedule.cron")
        );
        assert!(Schedule::parse("61 * * * *", "UTC").is_err());
        assert!(
            Schedule::parse("* * * * *", "Mars/Olympus")
                .unwrap_err()
                .to_string()
                .contains("schedule.timezone")
        );
    }
}
