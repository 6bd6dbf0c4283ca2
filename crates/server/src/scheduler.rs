//! Scheduled delivery: a crontab line wakes the scheduler, which queues
//! every issue in `schedule.issues_dir` whose `send_at` has come, that is
//! not a draft and has not been sent.
//!
//! "Sent exactly once" rests on the store, not on timing: an issue's slug
//! is unique, and so is a delivery per (issue, subscriber). Two schedulers
//! on one PostgreSQL that wake together both find the issue due, both
//! enqueue it, and the second enqueue adds nothing.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use letterpress_composer::{ComposedIssue, Composer};
use letterpress_store::{Store, StoreError};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

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

/// Records a composed issue and queues it for every active subscriber.
/// Returns how many deliveries were newly queued. Shared by `send`, the
/// scheduler and `send --due`, so they cannot drift apart.
pub async fn enqueue_issue(
    store: &Store,
    composed: &ComposedIssue,
) -> Result<(i64, u64), StoreError> {
    let issue = store
        .upsert_issue(&composed.slug, &composed.content_hash, &composed.subject)
        .await?;
    if issue.content_hash != composed.content_hash {
        store
            .update_issue_hash(issue.id, &composed.content_hash, &composed.subject)
            .await?;
    }
    // Workers elsewhere compose nothing: they read the bodies from the store.
    store
        .save_issue_body(issue.id, &composed.to_stored())
        .await?;
    let queued = store.enqueue_audience(issue.id, Utc::now()).await?;
    Ok((issue.id, queued))
}

/// One scheduler pass: queue every due issue. Errors in one issue are
/// logged and the others still go.
pub async fn tick(
    dir: &Path,
    composer: &Composer,
    store: &Store,
) -> Result<Vec<(String, u64)>, ScheduleError> {
    async {
        let mut queued = Vec::new();
        for due in due_issues(dir, store, Utc::now()).await? {
            let composed = match composer.compose_file(&due.path) {
                Ok(c) => c,
                Err(e) => {
                    tracing::error!(error = %e, "scheduler: cannot compose a due issue");
                    continue;
                }
            };
            let (_, n) = enqueue_issue(store, &composed).await?;
            tracing::info!(slug = %composed.slug, queued = n, "scheduled issue queued");
            queued.push((composed.slug, n));
        }
        tracing::debug!(issues = queued.len(), "scheduler tick done");
        Ok(queued)
    }
    .instrument(tracing::info_span!("scheduler_tick"))
    .await
}

/// Runs `on_tick` once at start (catching up on what came due while the
/// scheduler was down), then at every occurrence of `schedule`, until `stop`.
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
