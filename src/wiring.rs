//! Turns the configuration into the library crates' values. Each function
//! names the config key at fault when a value cannot be used.

use std::sync::Arc;

use anyhow::{Context, anyhow, bail};
use letterpress_composer::{Composer, ComposerSettings, Language, Newsletter, SendableIssue};
use letterpress_dkim::{DkimError, Ed25519Key, RsaKey, Signer};
use letterpress_sender::{
    BoxFuture, IssueLoader, IssueMessages, LoadError, MessageSettings, RetryPolicy, SmtpSettings,
    Throttle, Transport, Worker, WorkerSettings, dkim_signed_headers,
};
use letterpress_server::{
    MailgunSettings, PostmarkSettings, ProviderSettings, ResendSettings, SendgridSettings,
    SesSettings,
};
use letterpress_signing::{Keyring, ReturnPath};
use letterpress_store::Store;
use lettre::message::Mailbox;

use crate::config::{Config, TransportKind};

/// The composer for this newsletter.
pub(crate) fn composer(config: &Config) -> anyhow::Result<Composer> {
    let language = Language::parse(&config.newsletter.language)
        .map_err(|message| anyhow::anyhow!("newsletter.language: {message}"))?;
    Composer::new(ComposerSettings {
        content_root: config.content.root.clone(),
        issue_url: config.newsletter.issue_url.clone(),
        template: config.content.template.clone(),
        newsletter: Newsletter {
            name: config.newsletter.name.clone(),
            postal_address: config.newsletter.postal_address.clone(),
            language,
        },
    })
    .with_context(|| match &config.content.template {
        Some(t) => format!("content.template {}", t.display()),
        None => "the built-in default layout".to_string(),
    })
}

/// Connects to `database.url` and applies the migrations.
pub(crate) async fn open_store(config: &Config) -> anyhow::Result<Store> {
    let url = &config.database.url;
    // Forgotten addresses are recognised by a keyed hash; the key is the
    // token secret, so a leaked database alone cannot confirm an address.
    // The retired secrets hashed the addresses forgotten before a rotation.
    let key = keyring(config)?;
    let previous: Vec<&[u8]> = key.previous_keys().collect();
    let store = Store::connect(url)
        .await
        .with_context(|| format!("database.url {}", letterpress_core::redact_url(url)))?
        .with_suppression_keys(key.current_key(), &previous);
    store
        .migrate()
        .await
        .with_context(|| format!("migrating {}", letterpress_core::redact_url(url)))?;
    Ok(store)
}

/// The token keyring: the current secret and any retired ones.
pub(crate) fn keyring(config: &Config) -> anyhow::Result<Keyring> {
    let current = config.token_secret()?;
    let previous: Vec<String> = config
        .server
        .previous_secrets
        .as_deref()
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect();
    let previous: Vec<&[u8]> = previous.iter().map(|s| s.as_bytes()).collect();
    // No key named here: the short secret may be a retired one, and the
    // signing crate's KeyError is the one that knows which.
    Ok(Keyring::new(current.as_bytes(), &previous)?)
}

/// From, List-Id, the unsubscribe address and DKIM.
pub(crate) fn message_settings(
    config: &Config,
    keyring: Keyring,
) -> anyhow::Result<MessageSettings> {
    let n = &config.newsletter;
    let from: Mailbox = n
        .from
        .parse()
        .map_err(|e| anyhow!("newsletter.from {:?} is not a mailbox: {e}", n.from))?;
    let reply_to = match n.reply_to.as_deref().filter(|s| !s.is_empty()) {
        Some(r) => Some(
            r.parse::<Mailbox>()
                .map_err(|e| anyhow!("newsletter.reply_to {r:?} is not a mailbox: {e}"))?,
        ),
        None => None,
    };
    Ok(MessageSettings {
        from,
        reply_to,
        list_id: n.list_id.clone(),
        list_name: n.name.clone(),
        public_url: config.server.public_url.trim_end_matches('/').to_string(),
        unsubscribe_mailto: n.unsubscribe_mailto.clone().filter(|s| !s.is_empty()),
        keyring,
        dkim: dkim(config)?,
        return_path: return_path(config)?,
    })
}

/// `delivery.return_path`, parsed: the VERP template whose `{token}` names
/// a delivery (read back with [`ReturnPath::delivery_of`] and the keyring
/// of `server.secret`).
pub(crate) fn return_path(config: &Config) -> anyhow::Result<Option<ReturnPath>> {
    match config.delivery.return_path.as_deref().map(str::trim) {
        None | Some("") => Ok(None),
        Some(t) => ReturnPath::parse(t)
            .map(Some)
            .map_err(|e| anyhow!("delivery.return_path {t:?} {e}")),
    }
}

/// The provider webhooks of `[webhooks.*]` that are configured, each
/// checked here so that a bad key stops `serve` at once, naming it.
pub(crate) fn providers(config: &Config) -> anyhow::Result<ProviderSettings> {
    let w = &config.webhooks;
    let mut p = ProviderSettings::default();
    if !w.ses.topic_arns.is_empty() {
        let pinned = match &w.ses.certificate_file {
            Some(f) => Some(std::fs::read(f).with_context(|| {
                format!("webhooks.ses.certificate_file: cannot read {}", f.display())
            })?),
            None => None,
        };
        p.ses = Some(SesSettings::new(
            w.ses.topic_arns.clone(),
            pinned.as_deref(),
        )?);
    }
    match (w.postmark.username.as_deref(), config.postmark_password()?) {
        (Some(user), Some(password)) => p.postmark = Some(PostmarkSettings::new(user, &password)),
        (Some(_), None) => bail!(
            "webhooks.postmark.username is set but no password: set LETTERPRESS_WEBHOOKS__POSTMARK__PASSWORD or webhooks.postmark.password_file"
        ),
        (None, Some(_)) => {
            bail!("a Postmark webhook password is set but no webhooks.postmark.username")
        }
        (None, None) => {}
    }
    if let Some(key) = config.mailgun_signing_key()? {
        p.mailgun = Some(MailgunSettings::new(key.as_bytes()));
    }
    if let Some(key) = w
        .sendgrid
        .public_key
        .as_deref()
        .filter(|k| !k.trim().is_empty())
    {
        p.sendgrid = Some(SendgridSettings::new(key)?);
    }
    if let Some(secret) = config.resend_secret()? {
        p.resend = Some(ResendSettings::new(&secret).context("webhooks.resend.secret")?);
    }
    Ok(p)
}

/// The DKIM signer of `[dkim]`: RSA, plus Ed25519 when
/// `ed25519_private_key_path` is set. relaxed/relaxed (the signer's only
/// canonicalisation) survives the header refolding and trailing-space
/// trimming that relays commonly do.
fn dkim(config: &Config) -> anyhow::Result<Option<Signer>> {
    let d = &config.dkim;
    let (Some(domain), Some(selector), Some(path)) = (&d.domain, &d.selector, &d.private_key_path)
    else {
        let any = d.domain.is_some()
            || d.selector.is_some()
            || d.private_key_path.is_some()
            || d.ed25519_private_key_path.is_some()
            || d.ed25519_selector.is_some();
        if any {
            anyhow::bail!("dkim: domain, selector and private_key_path must all be set to sign");
        }
        return Ok(None);
    };
    let rsa = key(path, "dkim.private_key_path", RsaKey::from_pem)?;
    let name_error = |e: DkimError, selector_key: &str| match e {
        DkimError::InvalidName { tag: "d", .. } => anyhow!("dkim.domain: {e}"),
        DkimError::InvalidName { .. } | DkimError::SameSelector(_) => {
            anyhow!("{selector_key}: {e}")
        }
        e => anyhow!("dkim: {e}"),
    };
    let mut signer = Signer::new(domain, selector, rsa, dkim_signed_headers())
        .map_err(|e| name_error(e, "dkim.selector"))?;
    if let Some(path) = &d.ed25519_private_key_path {
        let ed25519 = key(path, "dkim.ed25519_private_key_path", Ed25519Key::from_pem)?;
        let selector = d
            .ed25519_selector
            .clone()
            .unwrap_or_else(|| format!("{selector}-ed25519"));
        signer = signer
            .co_sign(&selector, ed25519)
            .map_err(|e| name_error(e, "dkim.ed25519_selector"))?;
    }
    Ok(Some(signer))
}

/// Reads and parses the key file of config key `name`.
pub(crate) fn key<K>(
    path: &std::path::Path,
    name: &str,
    parse: impl FnOnce(&str) -> Result<K, DkimError>,
) -> anyhow::Result<K> {
    let pem = std::fs::read_to_string(path)
        .with_context(|| format!("{name}: cannot read {}", path.display()))?;
    parse(&pem).map_err(|e| anyhow!("{name} {}: {e}", path.display()))
}

/// The configured transport.
pub(crate) fn transport(config: &Config) -> anyhow::Result<Transport> {
    let d = &config.delivery;
    Ok(match d.transport {
        TransportKind::File => Transport::file(&d.outbox_dir)?,
        TransportKind::Smtp => Transport::smtp(&SmtpSettings {
            url: d.smtp_url.clone(),
            password: config.smtp_password()?,
            connections: d.concurrency,
            timeout: d.timeout,
        })?,
    })
}

/// The rate limits.
pub(crate) fn throttle(config: &Config) -> Throttle {
    Throttle::new(config.delivery.rate_per_second, &config.delivery.per_domain)
}

/// Worker tuning from `[delivery]`.
pub(crate) fn worker_settings(config: &Config) -> WorkerSettings {
    let d = &config.delivery;
    // A batch should be sendable well within its lease even at the
    // configured rate; otherwise claims would expire while waiting for tokens.
    let mut batch = d.batch_size.max(1);
    if d.rate_per_second > 0 {
        let sendable = (d.rate_per_second as u64 * d.lease.as_secs().max(1) / 4).max(1);
        batch = batch.min(sendable.min(u32::MAX as u64) as u32);
    }
    WorkerSettings {
        worker_id: worker_id(),
        concurrency: d.concurrency,
        batch_size: batch,
        lease: d.lease,
        retry: RetryPolicy {
            initial: d.retry.initial,
            max_delay: d.retry.max_delay,
            max_age: d.retry.max_age,
        },
        poll_interval: d.poll_interval,
        shutdown_grace: d.shutdown_grace,
        database_outage: d.database_outage,
    }
}

/// `host:pid:random`: unique per process, readable in the leases table.
pub(crate) fn worker_id() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into());
    format!(
        "{host}:{}:{:04x}",
        std::process::id(),
        rand::random::<u16>()
    )
}

/// The prepared per-issue messages.
pub(crate) fn issue_messages(
    issue: Arc<SendableIssue>,
    settings: Arc<MessageSettings>,
) -> Arc<IssueMessages> {
    Arc::new(IssueMessages::new(issue, settings))
}

/// A delivery worker over `store` with the configured transport, rate
/// limits and tuning, loading the issues it meets through `loader`.
pub(crate) fn worker(
    config: &Config,
    store: &Store,
    loader: Arc<dyn IssueLoader>,
) -> anyhow::Result<Arc<Worker>> {
    Ok(Arc::new(Worker::new(
        store.clone(),
        Arc::new(transport(config)?),
        Arc::new(throttle(config)),
        worker_settings(config),
        loader,
    )))
}

/// A worker for every issue in the queue, loading each from the store the
/// first time it meets it (`worker`, `serve`).
pub(crate) fn queue_worker(config: &Config, store: &Store) -> anyhow::Result<Arc<Worker>> {
    let settings = Arc::new(message_settings(config, keyring(config)?)?);
    let loader = Arc::new(StoredIssues {
        store: store.clone(),
        settings,
    });
    worker(config, store, loader)
}

/// Loads an issue's composed bodies from the store, so a worker needs
/// nothing but the database (several machines may share one PostgreSQL).
struct StoredIssues {
    store: Store,
    settings: Arc<MessageSettings>,
}

impl IssueLoader for StoredIssues {
    fn load(&self, issue_id: i64) -> BoxFuture<'_, Result<Arc<IssueMessages>, LoadError>> {
        Box::pin(async move {
            let stored = self
                .store
                .issue_body(issue_id)
                .await
                .map_err(|source| LoadError::Store { issue_id, source })?
                .ok_or(LoadError::NoContent(issue_id))?;
            let issue = SendableIssue::from_stored(&stored)
                .map_err(|source| LoadError::Unreadable { issue_id, source })?;
            Ok(issue_messages(Arc::new(issue), Arc::clone(&self.settings)))
        })
    }
}
