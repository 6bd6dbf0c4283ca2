//! `letterpress send` (an issue, test copies, or `--due`), `status` and
//! `retry-failed`.

use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::{anyhow, bail};
use chrono::Utc;
use indicatif::{ProgressBar, ProgressStyle};
use letterpress_composer::SendableIssue;
use letterpress_publish::{Action, PublishError};
use letterpress_sender::{
    BoxFuture, IssueLoader, IssueMessages, LoadError, MessageSettings, To, Until,
};
use letterpress_store::{IssueCounts, Store};
use tracing::Instrument;

use crate::cli::SendArgs;
use crate::config::Config;
use crate::{shutdown, wiring};

/// `letterpress send`.
pub(crate) async fn send(config: &Config, args: SendArgs) -> anyhow::Result<ExitCode> {
    if args.due {
        return send_due(config, &args).await;
    }
    let path = args
        .issue
        .as_deref()
        .ok_or_else(|| anyhow!("send needs an issue file or --due"))?;
    let composer = wiring::composer(config)?;
    let composed = composer.compose_file(path)?;
    for w in &composed.warnings {
        eprintln!("warning: {}: {w}", path.display());
    }
    let composed = Arc::new(composed.issue);
    let keyring = wiring::keyring(config)?;
    let settings = Arc::new(wiring::message_settings(config, keyring)?);

    if !args.to.is_empty() {
        if args.dry_run {
            // --dry-run writes and sends nothing, test copies included; the
            // addresses are still checked.
            for address in &args.to {
                letterpress_core::SubscriberEmail::parse(address)?;
            }
            eprintln!(
                "dry run: a test copy of {:?} (slug {}) would go to {}; nothing sent",
                composed.subject,
                composed.slug,
                args.to.join(", ")
            );
            return Ok(ExitCode::SUCCESS);
        }
        return send_test_copies(config, &composed, settings, &args.to).await;
    }

    let store = wiring::open_store(config).await?;
    let result = send_issue(config, &store, path, composed, settings, &args).await;
    store.close().await;
    result
}

/// `letterpress send --due`: every due issue, one after the other.
async fn send_due(config: &Config, args: &SendArgs) -> anyhow::Result<ExitCode> {
    let store = wiring::open_store(config).await?;
    let due =
        letterpress_publish::schedule::due_issues(&config.schedule.issues_dir, &store, Utc::now())
            .await?;
    if due.is_empty() {
        eprintln!(
            "no issue in {} is due",
            config.schedule.issues_dir.display()
        );
    }
    let composer = wiring::composer(config)?;
    let keyring = wiring::keyring(config)?;
    let settings = Arc::new(wiring::message_settings(config, keyring)?);
    let mut code = ExitCode::SUCCESS;
    for issue in due {
        let composed = Arc::new(composer.compose_file(&issue.path)?.issue);
        let args = SendArgs {
            issue: Some(issue.path.clone()),
            to: vec![],
            dry_run: args.dry_run,
            yes: true,
            wait: args.wait,
            due: false,
            allow_changed: false,
        };
        let c = send_issue(
            config,
            &store,
            &issue.path,
            composed,
            Arc::clone(&settings),
            &args,
        )
        .await?;
        if c != ExitCode::SUCCESS {
            code = c;
        }
    }
    store.close().await;
    Ok(code)
}

/// Sends one composed issue to the list: plan, confirm, publish, deliver.
async fn send_issue(
    config: &Config,
    store: &Store,
    path: &Path,
    composed: Arc<SendableIssue>,
    settings: Arc<MessageSettings>,
    args: &SendArgs,
) -> anyhow::Result<ExitCode> {
    let span = tracing::info_span!("issue", slug = %composed.slug);
    async {
        let in_file = |e: PublishError| match e {
            PublishError::ContentChanged(changed) => anyhow!(
                "{}: {changed}. Give the new version its own slug, or pass --allow-changed \
                 to send the changed file to those not yet served",
                path.display()
            ),
            other => anyhow!("{}: {other}", path.display()),
        };
        let plan = letterpress_publish::plan(store, &composed, args.allow_changed)
            .await
            .map_err(in_file)?;
        let resuming = plan.action != Action::New;
        if args.dry_run {
            eprintln!(
                "dry run: {:?} (slug {}) would go to {} active subscriber(s){}; nothing written",
                composed.subject,
                composed.slug,
                plan.audience,
                if resuming { ", minus those already served" } else { "" }
            );
            return Ok(ExitCode::SUCCESS);
        }
        if !args.yes && !confirm(&composed, plan.audience, resuming)? {
            eprintln!("not sent");
            return Ok(ExitCode::FAILURE);
        }
        let published = letterpress_publish::publish(store, &composed, &plan, Utc::now())
            .await
            .map_err(in_file)?;
        let (issue_id, queued) = (published.issue_id, published.queued);
        eprintln!(
            "sending {:?} ({}): {queued} newly queued{}",
            composed.subject,
            composed.slug,
            if resuming { " (resuming)" } else { "" }
        );
        let messages = wiring::issue_messages(Arc::clone(&composed), settings);
        let loader = Arc::new(OneIssue {
            id: issue_id,
            messages,
        });
        let worker = wiring::worker(config, store, loader)?;
        let stop = shutdown::on_signal();
        let deadline = tokio::time::Instant::now() + args.wait;
        let total = store
            .issue_counts(Some(&composed.slug))
            .await?
            .first()
            .map(|c| c.total)
            .unwrap_or(0);
        let bar = progress_bar(total);
        let ticker = tick_progress(bar.clone(), worker.progress(), store.clone(), composed.slug.clone());
        let run = worker
            .run(
                Until::Settled {
                    issue_id,
                    deadline,
                },
                stop.clone(),
            )
            .await;
        ticker.abort();
        bar.finish_and_clear();
        run?;
        let counts = store
            .issue_counts(Some(&composed.slug))
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| anyhow!("issue {} vanished", composed.slug))?;
        print_summary(&counts);
        if stop.is_cancelled() {
            eprintln!("stopped; run `letterpress send` again (or `worker`) to finish");
            return Ok(ExitCode::from(130));
        }
        if counts.queued + counts.deferred + counts.sending > 0 {
            eprintln!(
                "{} deliveries are still deferred; `letterpress worker`, `serve` or the next `send` will retry them",
                counts.queued + counts.deferred + counts.sending
            );
        }
        Ok(ExitCode::SUCCESS)
    }
    .instrument(span)
    .await
}

fn confirm(composed: &SendableIssue, audience: u64, resuming: bool) -> anyhow::Result<bool> {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        bail!("refusing to send without confirmation: stdin is not a terminal; pass --yes");
    }
    eprint!(
        "{} {:?} to {audience} active subscriber(s)? [y/N] ",
        if resuming { "Resume sending" } else { "Send" },
        composed.subject
    );
    std::io::stderr().flush()?;
    let mut answer = String::new();
    stdin.lock().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes"))
}

/// `--to`: test copies, outside the list and the ledger.
async fn send_test_copies(
    config: &Config,
    composed: &Arc<SendableIssue>,
    settings: Arc<MessageSettings>,
    to: &[String],
) -> anyhow::Result<ExitCode> {
    let transport = wiring::transport(config)?;
    let messages = IssueMessages::new(Arc::clone(composed), settings);
    let mut failed = 0;
    for address in to {
        let email = letterpress_core::SubscriberEmail::parse(address)?;
        // Subscriber id 0 never exists: the test copy's unsubscribe link
        // verifies but unsubscribes nobody.
        let built = messages.build(To {
            delivery_id: 0,
            subscriber_id: 0,
            token_salt: 0,
            email: email.as_str(),
            name: None,
        })?;
        // Named as the worker names a delivery's file, by the safe stem
        // (an address may hold a `/`); a test copy is no delivery: id 0.
        let attempt = transport
            .send(
                &built.message,
                &format!("{}-test", composed.slug),
                &letterpress_sender::outbox_file_stem(0, &email.key()),
            )
            .await;
        if attempt.verdict() == letterpress_sender::Verdict::Delivered {
            eprintln!("test copy to {email}: {}", attempt.reply);
        } else {
            failed += 1;
            eprintln!(
                "test copy to {email} not delivered ({:?}): {}",
                attempt.verdict(),
                attempt.reply
            );
        }
    }
    transport.shutdown().await;
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The loader for `send`: the one issue it composed.
struct OneIssue {
    id: i64,
    messages: Arc<IssueMessages>,
}

impl IssueLoader for OneIssue {
    fn load(&self, issue_id: i64) -> BoxFuture<'_, Result<Arc<IssueMessages>, LoadError>> {
        Box::pin(async move {
            if issue_id == self.id {
                Ok(Arc::clone(&self.messages))
            } else {
                Err(LoadError::NotCarried {
                    issue_id,
                    carries: self.id,
                })
            }
        })
    }
}

fn progress_bar(total: u64) -> ProgressBar {
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} settled · {msg} · {rate} · {eta} left")
            .map(|style| {
                // indicatif's {per_sec} prints the rate with four decimals
                // (`1,446.3697/s`); messages come whole.
                style.with_key(
                    "rate",
                    |state: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                        let _ = write!(w, "{}/s", whole_rate(state.per_sec()));
                    },
                )
            })
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}

/// A rate as a whole number with thousands separators: `1,446`.
/// (`as` saturates: NaN and negative rates, before the first tick, show 0.)
fn whole_rate(per_sec: f64) -> String {
    indicatif::HumanCount(per_sec.round() as u64).to_string()
}

fn tick_progress(
    bar: ProgressBar,
    progress: Arc<letterpress_sender::Progress>,
    store: Store,
    slug: String,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        // Settled by this worker, from its counters.
        let settled_here = || {
            [
                &progress.sent,
                &progress.failed,
                &progress.bounced,
                &progress.skipped,
            ]
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .sum::<u64>()
        };
        // Settled by others (earlier runs, other workers), as of the last
        // count. Counting in the database reads every delivery of the issue
        // (about 30 ms per 100,000), so it is done every 5 s and only for a
        // visible bar; the counters move it in between.
        let mut settled_elsewhere = 0u64;
        for n in 0u64.. {
            tick.tick().await;
            if n.is_multiple_of(20)
                && !bar.is_hidden()
                && let Ok(counts) = store.issue_counts(Some(&slug)).await
                && let Some(c) = counts.first()
            {
                settled_elsewhere = (c.sent + c.failed + c.skipped).saturating_sub(settled_here());
            }
            bar.set_position(settled_elsewhere + settled_here());
            bar.set_message(format!(
                "sent {} · deferred {} · failed {}",
                progress.sent.load(Ordering::Relaxed),
                progress.deferred.load(Ordering::Relaxed),
                progress.failed.load(Ordering::Relaxed) + progress.bounced.load(Ordering::Relaxed)
            ));
        }
    })
}

fn print_summary(c: &IssueCounts) {
    eprintln!(
        "{}: {} total · {} sent · {} deferred · {} queued · {} failed · {} skipped",
        c.slug,
        c.total,
        c.sent,
        c.deferred,
        c.queued + c.sending,
        c.failed,
        c.skipped
    );
}

/// One issue in `status`: its delivery counts and what was reported about
/// its accepted messages later (bounce events).
#[derive(serde::Serialize)]
struct StatusRow<'a> {
    #[serde(flatten)]
    counts: &'a IssueCounts,
    /// Sent deliveries reported bounced afterwards (hard or soft).
    bounced_after_acceptance: u64,
    /// Deliveries reported as spam.
    complaints: u64,
    /// Deliveries whose recipient unsubscribed through the provider.
    unsubscribe_requests: u64,
}

/// `letterpress status`.
pub(crate) async fn status(
    config: &Config,
    slug: Option<&str>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let store = wiring::open_store(config).await?;
    let counts = store.issue_counts(slug).await?;
    let bounces = store.issue_bounces(slug).await?;
    store.close().await;
    if let Some(s) = slug
        && counts.is_empty()
    {
        bail!("no issue with slug {s:?} has been sent");
    }
    let rows: Vec<StatusRow<'_>> = counts
        .iter()
        .map(|c| {
            let b = bounces.iter().find(|b| b.slug == c.slug);
            StatusRow {
                counts: c,
                bounced_after_acceptance: b.map_or(0, |b| b.bounced_after_acceptance),
                complaints: b.map_or(0, |b| b.complaints),
                unsubscribe_requests: b.map_or(0, |b| b.unsubscribe_requests),
            }
        })
        .collect();
    if json {
        println!("{}", serde_json::to_string(&rows)?);
    } else {
        if counts.is_empty() {
            eprintln!("no issues sent yet");
        }
        for r in &rows {
            print_summary(r.counts);
            eprintln!(
                "{}: {} bounced after acceptance · {} complaints · {} unsubscribe requests",
                r.counts.slug, r.bounced_after_acceptance, r.complaints, r.unsubscribe_requests
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `letterpress retry-failed SLUG`.
pub(crate) async fn retry_failed(config: &Config, slug: &str) -> anyhow::Result<ExitCode> {
    let store = wiring::open_store(config).await?;
    let issue = store
        .get_issue(slug)
        .await?
        .ok_or_else(|| anyhow!("no issue with slug {slug:?} has been sent"))?;
    let n = store.retry_failed(issue.id, Utc::now()).await?;
    store.close().await;
    eprintln!(
        "{n} failed deliveries of {slug} queued again; `send`, `worker` or `serve` will deliver them"
    );
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    #[test]
    fn rates_are_whole_with_thousands_separators() {
        for (rate, shown) in [
            (1446.3697, "1,446"),
            (0.4, "0"),
            (999.5, "1,000"),
            (5_288_000.0, "5,288,000"),
            (f64::NAN, "0"),
            (-3.0, "0"),
        ] {
            assert_eq!(super::whole_rate(rate), shown, "{rate}");
        }
    }
}
