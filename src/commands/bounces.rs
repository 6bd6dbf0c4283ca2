//! `letterpress bounces` (and `serve`, every `bounces.interval`): reads the
//! bounce mailbox, turns each DSN and feedback report into bounce events
//! (the `letterpress-bounces` crate reads them; the store records them),
//! and moves what it processed to `bounces.done_folder`, so a restart reads
//! nothing twice.
//!
//! A message is *processed* when at least one of its findings names a
//! delivery or a subscriber of ours. Everything else (auto-replies, human
//! replies, success and delay notices, reports about mail we did not send)
//! goes to `bounces.ignored_folder`, or stays where it is with the keyword
//! `$LetterpressIgnored`, and is never counted.
//!
//! A finding is found again by, in this order: a VERP return path among
//! the message's delivery addresses, the reported message's Message-ID, the
//! reported recipient's address. Only the first of these the report carries
//! is used: a report quoting a Message-ID that is not ours is not ours,
//! whoever it names.

use std::fmt;
use std::process::ExitCode;

use anyhow::{Context, anyhow};
use chrono::{DateTime, Utc};
use letterpress_bounces::{Finding, Limits, Parsed, Report, Verdict};
use letterpress_signing::{Binding, Keyring, Purpose, ReturnPath};
use letterpress_store::{BounceEvent, BounceKind, Correlation, RowBinding, Store};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::config::Config;
use crate::imap::{Mailbox, Target};
use crate::wiring;

/// What one run did, for the summary line.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Summary {
    read: u32,
    hard: u32,
    soft: u32,
    complaints: u32,
    already_known: u32,
    suppressed: u32,
    processed: u32,
    ignored: u32,
    not_ours: u32,
    too_large: u32,
    left: u32,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "bounces: {} message(s) read: {} hard, {} soft, {} complaint(s) recorded \
             ({} already known, {} subscriber(s) suppressed); {} processed, {} ignored \
             ({} about mail not ours, {} too large to read); {} left for the next run",
            self.read,
            self.hard,
            self.soft,
            self.complaints,
            self.already_known,
            self.suppressed,
            self.processed,
            self.ignored,
            self.not_ours,
            self.too_large,
            self.left,
        )
    }
}

/// Where the mailbox is and how to log in: checked before anything is
/// read.
struct Settings {
    target: Target,
    password: String,
    /// Verifies the unsubscribe token of a reported message's
    /// List-Unsubscribe link.
    keyring: Keyring,
    /// `server.public_url`: whose `/u/TOKEN` links are ours.
    public_url: String,
    /// `delivery.return_path`, the VERP template, when set.
    return_path: Option<ReturnPath>,
}

impl Settings {
    fn from_config(config: &Config) -> anyhow::Result<Settings> {
        let url = config.bounces.imap_url.as_deref().ok_or_else(|| {
            anyhow!(
                "bounces.imap_url is not set: name the bounce mailbox (imaps://USER@HOST/FOLDER)"
            )
        })?;
        let target = Target::parse(url)?;
        let password = config.imap_password()?.ok_or_else(|| {
            anyhow!(
                "the bounce mailbox's password is not set: LETTERPRESS_BOUNCES__IMAP_PASSWORD or bounces.imap_password_file"
            )
        })?;
        if config.bounces.done_folder.trim().is_empty() {
            anyhow::bail!("bounces.done_folder is empty: name the folder processed reports go to");
        }
        // Moved into the folder it is read from, a message would come back
        // under a new UID and be read again on every run.
        let read = target.folder.as_str();
        let same = |f: &str| f.eq_ignore_ascii_case(read);
        if same(&config.bounces.done_folder) {
            anyhow::bail!(
                "bounces.done_folder {:?} is the folder bounces.imap_url reads: name another",
                config.bounces.done_folder
            );
        }
        if let Some(f) = config.bounces.ignored_folder.as_deref().filter(|f| same(f)) {
            anyhow::bail!(
                "bounces.ignored_folder {f:?} is the folder bounces.imap_url reads: name another, or leave it unset to leave non-bounces where they are"
            );
        }
        Ok(Settings {
            target,
            password,
            keyring: wiring::keyring(config)?,
            public_url: config.server.public_url.trim_end_matches('/').to_string(),
            return_path: wiring::return_path(config)?,
        })
    }
}

/// `serve`'s bounce mailbox, its settings checked when `serve` starts (a
/// bad key stops `serve` at once, naming it).
pub(crate) struct Poller {
    config: Config,
    settings: Settings,
}

impl Poller {
    /// `None` when no mailbox is configured.
    pub(crate) fn new(config: &Config) -> anyhow::Result<Option<Poller>> {
        if config.bounces.imap_url.is_none() {
            return Ok(None);
        }
        Ok(Some(Poller {
            config: config.clone(),
            settings: Settings::from_config(config)?,
        }))
    }
}

/// `letterpress bounces`: one pass over the mailbox.
pub(crate) async fn bounces(config: &Config) -> anyhow::Result<ExitCode> {
    let settings = Settings::from_config(config)?;
    let store = wiring::open_store(config).await?;
    let result = run_once(config, &settings, &store).await;
    store.close().await;
    let summary = result?;
    crate::logging::notice(&summary.to_string());
    Ok(ExitCode::SUCCESS)
}

/// `serve`'s part: a pass every `bounces.interval` until `stop`; a pass
/// that fails (the server down, the database away) is logged and the next
/// one tries again.
pub(crate) async fn poll(poller: Poller, store: Store, stop: CancellationToken) {
    let Poller { config, settings } = poller;
    loop {
        // A stop ends a pass where it is: what was recorded stays recorded
        // (each event once), and a message not yet moved is read again
        // next time and found already known.
        let pass = tokio::select! {
            _ = stop.cancelled() => return,
            pass = run_once(&config, &settings, &store) => pass,
        };
        match pass {
            Ok(summary) if summary.read > 0 => tracing::info!("{summary}"),
            Ok(_) => tracing::debug!("bounce mailbox: nothing new"),
            Err(e) => {
                tracing::error!(error = %crate::error_message(&e), "bounce mailbox pass failed; the next one tries again");
            }
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(config.bounces.interval) => {}
        }
    }
}

async fn run_once(config: &Config, settings: &Settings, store: &Store) -> anyhow::Result<Summary> {
    let span = tracing::info_span!("bounce_mailbox", folder = %settings.target.folder);
    async {
        let bounces = &config.bounces;
        let limits = Limits::default();
        let mut mailbox = Mailbox::open(&settings.target, &settings.password, bounces).await?;
        let max = usize::try_from(bounces.max_messages).unwrap_or(usize::MAX);
        // One more than the cap: whether any are left for the next run.
        let mut uids = mailbox.pending(max.saturating_add(1)).await?;
        let mut summary = Summary::default();
        if uids.len() > max {
            uids.truncate(max);
            summary.left = 1;
        }
        let mut folders_made = false;
        for uid in uids {
            let fetched = mailbox.fetch(uid, limits.max_bytes).await?;
            summary.read += 1;
            let span = tracing::info_span!("bounce_message", uid, size = fetched.size);
            let disposition = async {
                let Some(raw) = fetched.raw.as_deref() else {
                    summary.too_large += 1;
                    return Ok::<_, anyhow::Error>(Disposition::Ignored);
                };
                let parsed = letterpress_bounces::parse(raw, &limits);
                record(
                    settings,
                    store,
                    &parsed,
                    config.server.soft_bounce_limit,
                    &mut summary,
                )
                .await
            }
            .instrument(span)
            .await?;
            if !folders_made {
                mailbox.ensure_folder(&bounces.done_folder).await?;
                if let Some(ignored) = &bounces.ignored_folder {
                    mailbox.ensure_folder(ignored).await?;
                }
                folders_made = true;
            }
            match (disposition, &bounces.ignored_folder) {
                (Disposition::Processed, _) => {
                    summary.processed += 1;
                    mailbox.move_to(&[uid], &bounces.done_folder).await?;
                }
                (Disposition::Ignored, Some(folder)) => {
                    summary.ignored += 1;
                    mailbox.move_to(&[uid], folder).await?;
                }
                (Disposition::Ignored, None) => {
                    summary.ignored += 1;
                    mailbox.mark_ignored(&[uid]).await?;
                }
            }
        }
        if summary.left > 0 {
            // The count, not a flag: what is still waiting.
            summary.left =
                u32::try_from(mailbox.pending(usize::MAX).await?.len()).unwrap_or(u32::MAX);
        }
        mailbox.close().await;
        Ok(summary)
    }
    .instrument(span)
    .await
}

/// What becomes of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Disposition {
    /// A report about mail of ours: to the done folder.
    Processed,
    /// Anything else: left alone (or to the ignored folder).
    Ignored,
}

/// How a finding is found again: a VERP return path among the message's
/// addresses, else the reported Message-ID, else (a feedback report whose
/// loop strips both) the unsubscribe token in the reported message's
/// List-Unsubscribe link, else the reported address.
async fn correlation(
    settings: &Settings,
    store: &Store,
    parsed: &Parsed,
    finding: &Finding,
) -> anyhow::Result<Option<Correlation>> {
    if let Some(return_path) = &settings.return_path
        && let Some(id) = parsed
            .verp_candidates
            .iter()
            .find_map(|a| return_path.delivery_of(&settings.keyring, a))
    {
        return Ok(Some(Correlation::Delivery(id)));
    }
    if let Some(id) = &finding.message_id {
        return Ok(Some(Correlation::MessageId(id.clone())));
    }
    if let Report::Arf(arf) = &parsed.report {
        let links = arf.original.iter().flat_map(|o| o.list_unsubscribe.iter());
        for link in links {
            let Some(token) = unsubscribe_token(&settings.public_url, link) else {
                continue;
            };
            let now = u64::try_from(Utc::now().timestamp()).unwrap_or(0);
            let Some(claims) = settings.keyring.verify(token, Purpose::Unsubscribe, now) else {
                continue;
            };
            let binding = match claims.binding {
                Binding::Row(salt) => RowBinding::Row(salt),
                Binding::Legacy => RowBinding::Legacy,
            };
            if let Some(subscriber) = store
                .subscriber_by_token(claims.subscriber_id, binding)
                .await
                .context("looking up a List-Unsubscribe token")?
            {
                return Ok(Some(Correlation::Address(subscriber.email)));
            }
        }
    }
    Ok(finding.recipient.clone().map(Correlation::Address))
}

/// The token of an unsubscribe link of ours: `{public_url}/u/{token}`.
fn unsubscribe_token<'a>(public_url: &str, link: &'a str) -> Option<&'a str> {
    let rest = link.strip_prefix(public_url)?.strip_prefix("/u/")?;
    let token = rest.split(['?', '#', '/']).next()?;
    (!token.is_empty()).then_some(token)
}

fn kind(verdict: Verdict) -> Option<BounceKind> {
    match verdict {
        Verdict::Hard => Some(BounceKind::Hard),
        Verdict::Soft => Some(BounceKind::Soft),
        Verdict::Complaint => Some(BounceKind::Complaint),
        Verdict::Ignore => None,
    }
}

/// Records every finding of one message; whether any was about mail of
/// ours.
async fn record(
    settings: &Settings,
    store: &Store,
    parsed: &Parsed,
    soft_limit: u32,
    summary: &mut Summary,
) -> anyhow::Result<Disposition> {
    let findings = parsed.report.findings();
    if findings.is_empty() {
        if let Report::NotABounce(why) = &parsed.report {
            tracing::debug!(%why, "not a bounce");
        } else {
            tracing::debug!("a report with nothing to record (success, delay, not-spam)");
        }
        return Ok(Disposition::Ignored);
    }
    let occurred_at = parsed
        .date
        .and_then(|t| DateTime::<Utc>::from_timestamp(t, 0))
        .unwrap_or_else(Utc::now);
    let mut ours = false;
    for finding in &findings {
        let find = correlation(settings, store, parsed, finding).await?;
        let (Some(find), Some(kind)) = (find, kind(finding.verdict)) else {
            continue;
        };
        let event = BounceEvent {
            find,
            kind,
            reason: finding.reason.clone(),
            status: finding.status.clone(),
            occurred_at,
            source: finding.source,
            event_id: finding.event_id.clone(),
        };
        let outcome = store
            .record_bounce_event(&event, soft_limit)
            .await
            .context("recording a bounce")?;
        let matched = outcome.delivery_id.is_some() || outcome.subscriber_found;
        tracing::info!(
            kind = ?event.kind,
            status = event.status.as_deref().unwrap_or(""),
            duplicate = outcome.duplicate,
            matched,
            suppressed = outcome.suppressed,
            "bounce event"
        );
        if !matched {
            continue;
        }
        ours = true;
        if outcome.duplicate {
            summary.already_known += 1;
            continue;
        }
        match finding.verdict {
            Verdict::Hard => summary.hard += 1,
            Verdict::Soft => summary.soft += 1,
            Verdict::Complaint => summary.complaints += 1,
            Verdict::Ignore => {}
        }
        if outcome.suppressed {
            summary.suppressed += 1;
        }
    }
    if !ours {
        summary.not_ours += 1;
    }
    Ok(if ours {
        Disposition::Processed
    } else {
        Disposition::Ignored
    })
}

#[cfg(test)]
mod tests {
    use super::unsubscribe_token;

    #[test]
    fn only_our_unsubscribe_links_give_a_token() {
        let ours = "https://news.example";
        assert_eq!(
            unsubscribe_token(ours, "https://news.example/u/AbC-_1"),
            Some("AbC-_1")
        );
        assert_eq!(
            unsubscribe_token(ours, "https://news.example/u/AbC?x=1"),
            Some("AbC")
        );
        assert_eq!(unsubscribe_token(ours, "https://news.example/u/"), None);
        assert_eq!(
            unsubscribe_token(ours, "https://news.example.evil/u/AbC"),
            None
        );
        assert_eq!(unsubscribe_token(ours, "https://other.example/u/AbC"), None);
        assert_eq!(
            unsubscribe_token(ours, "mailto:unsubscribe@news.example"),
            None
        );
    }
}
