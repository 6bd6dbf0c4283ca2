//! `config/letterpress.toml`, overridden by `LETTERPRESS_<SECTION>__<KEY>`
//! environment variables (figment does the layering and names the key and
//! source of any bad value).
//!
//! Secrets (the SMTP password, HMAC keys) are taken only from the
//! environment or from files named in the config, never from the TOML
//! itself: config files end up in repositories and backups.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use figment::Figment;
use figment::providers::{Env, Format, Toml};
use serde::Deserialize;

/// The config file looked for in the working directory.
pub const LOCAL_CONFIG: &str = "letterpress.toml";
/// The config file of a source checkout, looked for after [`LOCAL_CONFIG`]
/// (what `make run` uses).
pub const CHECKOUT_CONFIG: &str = "config/letterpress.toml";

/// Keys that hold file or folder paths. A relative path in a config file
/// is resolved against the file's own folder, so the file means the same
/// whatever the working directory (a cron job, a systemd unit, a shell in
/// a subfolder); one from the environment stays relative to the working
/// directory, as a shell user expects.
const PATH_KEYS: [&str; 17] = [
    "content.root",
    "content.template",
    "delivery.outbox_dir",
    "delivery.smtp_password_file",
    "delivery.tls_ca_file",
    "dkim.private_key_path",
    "dkim.ed25519_private_key_path",
    "server.secret_file",
    "server.webhook_secret_file",
    "server.metrics_token_file",
    "schedule.issues_dir",
    "bounces.imap_password_file",
    "bounces.tls_ca_file",
    "webhooks.ses.certificate_file",
    "webhooks.postmark.password_file",
    "webhooks.mailgun.signing_key_file",
    "webhooks.resend.secret_file",
];

/// The whole configuration.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// `[database]`
    pub database: Database,
    /// `[newsletter]`
    pub newsletter: Newsletter,
    /// `[content]`
    pub content: Content,
    /// `[delivery]`
    pub delivery: Delivery,
    /// `[dkim]`
    pub dkim: Dkim,
    /// `[server]`
    pub server: Server,
    /// `[schedule]`
    pub schedule: Schedule,
    /// `[dns]`
    pub dns: Dns,
    /// The file this configuration was read from, when it exists (a
    /// child process is handed the same one).
    #[serde(skip)]
    pub file: Option<PathBuf>,
    /// `[bounces]`
    pub bounces: Bounces,
    /// `[webhooks.*]`
    pub webhooks: Webhooks,
}

/// `[bounces]`: the bounce mailbox `letterpress bounces` (and `serve`,
/// every `interval`) reads over IMAP.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Bounces {
    /// `imaps://USER@HOST[:993][/FOLDER]`, or `imap://USER@HOST[:143][/FOLDER]`
    /// with STARTTLS (required); the folder defaults to `INBOX`. Unset: no
    /// bounce mailbox.
    pub imap_url: Option<String>,
    /// Never read from the TOML: `LETTERPRESS_BOUNCES__IMAP_PASSWORD`.
    pub imap_password: Option<String>,
    /// A file holding the IMAP password.
    pub imap_password_file: Option<PathBuf>,
    /// PEM certificates of a private CA to trust instead of the public roots.
    pub tls_ca_file: Option<PathBuf>,
    /// Where processed reports go (created when missing).
    pub done_folder: String,
    /// Where messages that are not bounces of ours go; unset, they stay
    /// where they are, marked with the keyword `$LetterpressIgnored` (not
    /// `\Seen`) so the next run skips them.
    pub ignored_folder: Option<String>,
    /// How often `serve` reads the mailbox.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// Messages read per run at most (the rest wait for the next run).
    pub max_messages: u32,
    /// How long one IMAP command may take.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
}

impl Default for Bounces {
    fn default() -> Self {
        Self {
            imap_url: None,
            imap_password: None,
            imap_password_file: None,
            tls_ca_file: None,
            done_folder: "Processed".into(),
            ignored_folder: None,
            interval: Duration::from_secs(300),
            max_messages: 500,
            timeout: Duration::from_secs(60),
        }
    }
}

/// `[webhooks.<provider>]`: the relays' bounce and complaint webhooks. A
/// provider's route answers 401 until its section has what verifying its
/// requests needs.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct Webhooks {
    /// `[webhooks.ses]`
    pub ses: SesHook,
    /// `[webhooks.postmark]`
    pub postmark: PostmarkHook,
    /// `[webhooks.mailgun]`
    pub mailgun: MailgunHook,
    /// `[webhooks.sendgrid]`
    pub sendgrid: SendgridHook,
    /// `[webhooks.resend]`
    pub resend: ResendHook,
}

/// `[webhooks.ses]`: Amazon SES notifications through SNS.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct SesHook {
    /// The SNS topics whose messages are believed; on when not empty.
    pub topic_arns: Vec<String>,
    /// A pinned signing certificate (PEM), used instead of fetching the
    /// one a message names (tests, hosts that may not reach AWS).
    pub certificate_file: Option<PathBuf>,
}

/// `[webhooks.postmark]`: HTTP Basic credentials set on the hook.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct PostmarkHook {
    /// The user name in the hook's URL.
    pub username: Option<String>,
    /// Never read from the TOML: `LETTERPRESS_WEBHOOKS__POSTMARK__PASSWORD`.
    pub password: Option<String>,
    /// A file holding the password.
    pub password_file: Option<PathBuf>,
}

/// `[webhooks.mailgun]`.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct MailgunHook {
    /// Never read from the TOML: `LETTERPRESS_WEBHOOKS__MAILGUN__SIGNING_KEY`.
    pub signing_key: Option<String>,
    /// A file holding the HTTP webhook signing key.
    pub signing_key_file: Option<PathBuf>,
}

/// `[webhooks.sendgrid]`.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct SendgridHook {
    /// The Event Webhook's verification key (base64, as SendGrid shows
    /// it). Public, so it may be in the file.
    pub public_key: Option<String>,
}

/// `[webhooks.resend]`.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct ResendHook {
    /// Never read from the TOML: `LETTERPRESS_WEBHOOKS__RESEND__SECRET` (`whsec_…`).
    pub secret: Option<String>,
    /// A file holding the signing secret.
    pub secret_file: Option<PathBuf>,
}

/// `[dns]`: how `letterpress dns --check` and `doctor` look records up.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct Dns {
    /// The DNS server to ask (`IP` or `IP:PORT`); the system's when unset.
    pub resolver: Option<String>,
}

/// `[database]`
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Database {
    /// `sqlite://data/letterpress.db` or `postgres://…`.
    pub url: String,
}

impl Default for Database {
    fn default() -> Self {
        Self {
            url: "sqlite://data/letterpress.db".into(),
        }
    }
}

/// `[newsletter]`: identity and footer.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Newsletter {
    /// Shown in the header, the List-Id phrase and the pages.
    pub name: String,
    /// The From mailbox, `Name <address>`.
    pub from: String,
    /// Optional Reply-To mailbox.
    pub reply_to: Option<String>,
    /// The List-Id identifier, e.g. `news.example.com`.
    pub list_id: String,
    /// Postal address printed in the footer (CAN-SPAM asks for one).
    pub postal_address: String,
    /// Web address of an issue with `{slug}`.
    pub issue_url: String,
    /// Optional mailto address added to List-Unsubscribe.
    pub unsubscribe_mailto: Option<String>,
    /// The BCP 47 language issues are written in (the HTML's `lang`; an
    /// issue's front matter `language` overrides it). Default `en`.
    pub language: String,
}

impl Default for Newsletter {
    fn default() -> Self {
        Self {
            name: "Letterpress Sample".into(),
            from: "Letterpress Sample <newsletter@example.com>".into(),
            reply_to: None,
            list_id: "newsletter.example.com".into(),
            postal_address: "1 Example Street, Springfield".into(),
            issue_url: "https://example.com/newsletter/{slug}/".into(),
            unsubscribe_mailto: None,
            language: "en".into(),
        }
    }
}

/// `[content]`
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Content {
    /// Site root that shortcode paths are relative to.
    pub root: PathBuf,
    /// MJML layout; the built-in default layout when unset.
    pub template: Option<PathBuf>,
}

impl Default for Content {
    fn default() -> Self {
        Self {
            root: "examples".into(),
            template: None,
        }
    }
}

/// `[delivery]`
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Delivery {
    /// `file` or `smtp`.
    pub transport: TransportKind,
    /// Where the file transport writes.
    pub outbox_dir: PathBuf,
    /// The SMTP relay.
    pub smtp_url: String,
    /// Never read from the TOML: `LETTERPRESS_DELIVERY__SMTP_PASSWORD`.
    pub smtp_password: Option<String>,
    /// A file holding the SMTP password.
    pub smtp_password_file: Option<PathBuf>,
    /// A PEM file of a private CA to trust for the relay's certificate.
    pub tls_ca_file: Option<PathBuf>,
    /// SMTP connections in flight.
    pub concurrency: u32,
    /// Global messages per second (0 = unlimited).
    pub rate_per_second: u32,
    /// Per-domain messages per second, e.g. `{ "gmail.com" = 20 }`.
    pub per_domain: HashMap<String, u32>,
    /// Deliveries claimed per batch.
    pub batch_size: u32,
    /// How long a claim holds.
    #[serde(with = "humantime_serde")]
    pub lease: Duration,
    /// SMTP command timeout.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// How long an idle worker waits before looking again.
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
    /// How long a stopping worker waits for messages in flight.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// How long `send`, `worker` and `serve` wait for a database that went
    /// away (a PostgreSQL restart) before they give up.
    #[serde(with = "humantime_serde")]
    pub database_outage: Duration,
    /// The envelope sender per delivery (VERP), e.g.
    /// `bounces+{token}@bounce.example.com`: `{token}` names the delivery,
    /// signed with `server.secret`, so a bounce mailed back to it is traced
    /// to its delivery. Unset: the envelope sender is `newsletter.from`.
    pub return_path: Option<String>,
    /// `[delivery.retry]`
    pub retry: Retry,
}

/// The two transports.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum TransportKind {
    /// `.eml` files in `outbox_dir`.
    #[default]
    File,
    /// SMTP via `smtp_url`.
    Smtp,
}

impl Default for Delivery {
    fn default() -> Self {
        Self {
            transport: TransportKind::File,
            outbox_dir: "outbox".into(),
            smtp_url: "smtp://127.0.0.1:25".into(),
            smtp_password: None,
            smtp_password_file: None,
            tls_ca_file: None,
            concurrency: 8,
            rate_per_second: 0,
            per_domain: HashMap::new(),
            batch_size: 100,
            lease: Duration::from_secs(120),
            timeout: Duration::from_secs(60),
            poll_interval: Duration::from_secs(2),
            shutdown_grace: Duration::from_secs(30),
            database_outage: Duration::from_secs(60),
            return_path: None,
            retry: Retry::default(),
        }
    }
}

/// `[delivery.retry]`
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Retry {
    /// First retry delay.
    #[serde(with = "humantime_serde")]
    pub initial: Duration,
    /// Cap of the doubling delay.
    #[serde(with = "humantime_serde")]
    pub max_delay: Duration,
    /// Give-up age.
    #[serde(with = "humantime_serde")]
    pub max_age: Duration,
}

impl Default for Retry {
    fn default() -> Self {
        Self {
            initial: Duration::from_secs(300),
            max_delay: Duration::from_secs(4 * 3600),
            max_age: Duration::from_secs(4 * 86400),
        }
    }
}

/// `[dkim]`: signing is on when `domain`, `selector` and
/// `private_key_path` are set; every message then carries an rsa-sha256
/// signature, and with `ed25519_private_key_path` an ed25519-sha256 one
/// below it (RFC 8463; verifiers that do not know it ignore it).
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct Dkim {
    /// The signing domain (d=).
    pub domain: Option<String>,
    /// The selector (s=) of the RSA key: its public key is published at
    /// `SELECTOR._domainkey.DOMAIN`.
    pub selector: Option<String>,
    /// PEM file with the RSA private key, at least 2048 bits: PKCS#1
    /// (`BEGIN RSA PRIVATE KEY`) or PKCS#8 (`BEGIN PRIVATE KEY`), unencrypted.
    pub private_key_path: Option<PathBuf>,
    /// PEM file with an Ed25519 private key (PKCS#8, `BEGIN PRIVATE KEY`,
    /// as `openssl genpkey -algorithm ed25519` writes it) for a second
    /// signature.
    pub ed25519_private_key_path: Option<PathBuf>,
    /// The selector of the Ed25519 key (a selector names one key, so it
    /// differs from `selector`); default `<selector>-ed25519`.
    pub ed25519_selector: Option<String>,
}

/// `[server]`
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Server {
    /// The HTTP listener.
    pub bind: String,
    /// The public address used in links (unsubscribe, confirm).
    pub public_url: String,
    /// Never read from the TOML: `LETTERPRESS_SERVER__SECRET`.
    pub secret: Option<String>,
    /// A file holding the token secret; default `<data dir>/secret.key`,
    /// generated on first run.
    pub secret_file: Option<PathBuf>,
    /// Retired secrets still accepted (rotation grace), from the environment:
    /// `LETTERPRESS_SERVER__PREVIOUS_SECRETS=old1,old2`. They also recognise
    /// the addresses forgotten while they were current.
    pub previous_secrets: Option<String>,
    /// Never read from the TOML: `LETTERPRESS_SERVER__WEBHOOK_SECRET`.
    pub webhook_secret: Option<String>,
    /// A file holding the webhook secret.
    pub webhook_secret_file: Option<PathBuf>,
    /// Soft bounces in a row that suppress a subscriber.
    pub soft_bounce_limit: u32,
    /// Signups accepted per visitor (IPv4 address or IPv6 /64) per minute.
    pub signup_per_minute: u32,
    /// Reverse proxies (addresses or CIDR blocks) whose `X-Forwarded-For`
    /// names the visitor; from anyone else the header is ignored.
    pub trusted_proxies: Vec<String>,
    /// Sites (origins such as `https://example.com`) whose scripts may
    /// post JSON to `/subscribe`: their CORS preflights are answered.
    pub allowed_origins: Vec<String>,
    /// Where a form signup lands (303): the site's thank-you page; default
    /// letterpress's own `/subscribe/thanks`.
    pub signup_redirect: Option<String>,
    /// How long a client may take to send a request's head, and how long
    /// an idle kept-alive connection stays open.
    #[serde(with = "humantime_serde")]
    pub header_timeout: Duration,
    /// How long a request may take, its body included.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// HTTP connections open at once.
    pub max_connections: usize,
    /// Never read from the TOML: `LETTERPRESS_SERVER__METRICS_TOKEN`, the
    /// bearer token `/metrics` asks for (without one, `/metrics` is off).
    pub metrics_token: Option<String>,
    /// A file holding the metrics token.
    pub metrics_token_file: Option<PathBuf>,
}

impl Default for Server {
    fn default() -> Self {
        Self {
            bind: "127.0.0.1:8080".into(),
            public_url: "http://127.0.0.1:8080".into(),
            secret: None,
            secret_file: None,
            previous_secrets: None,
            webhook_secret: None,
            webhook_secret_file: None,
            soft_bounce_limit: 3,
            signup_per_minute: 5,
            trusted_proxies: Vec::new(),
            allowed_origins: Vec::new(),
            signup_redirect: None,
            header_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            max_connections: 1024,
            metrics_token: None,
            metrics_token_file: None,
        }
    }
}

/// `[schedule]`
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Schedule {
    /// A 5-field crontab line (or 6 with seconds first); empty disables the scheduler.
    pub cron: String,
    /// IANA time zone the cron line is read in.
    pub timezone: String,
    /// Where scheduled issues live.
    pub issues_dir: PathBuf,
    /// How long `serve` lets the child process that composes a due issue
    /// run before it is killed and the issue counts as not composed.
    #[serde(with = "humantime_serde")]
    pub compose_timeout: Duration,
}

impl Default for Schedule {
    fn default() -> Self {
        Self {
            cron: "*/5 * * * *".into(),
            timezone: "UTC".into(),
            issues_dir: "issues".into(),
            compose_timeout: Duration::from_secs(60),
        }
    }
}

/// Keys that hold secrets and so must not come from the config file.
const SECRET_KEYS: [&str; 9] = [
    "delivery.smtp_password",
    "bounces.imap_password",
    "server.secret",
    "server.previous_secrets",
    "server.webhook_secret",
    "server.metrics_token",
    "webhooks.postmark.password",
    "webhooks.mailgun.signing_key",
    "webhooks.resend.secret",
];

impl Config {
    /// Loads `path` (which must exist unless it is the default) and the
    /// environment on top.
    pub fn load(path: Option<&Path>) -> anyhow::Result<Self> {
        let path = match path {
            Some(p) if !p.exists() => bail!("config file {} does not exist", p.display()),
            Some(p) => p.to_path_buf(),
            None => [LOCAL_CONFIG, CHECKOUT_CONFIG]
                .into_iter()
                .map(PathBuf::from)
                .find(|p| p.is_file())
                // Built-in defaults only: figment reads a missing file as empty.
                .unwrap_or_else(|| PathBuf::from(LOCAL_CONFIG)),
        };
        let figment = Figment::new()
            .merge(Toml::file(&path))
            // The file's relative paths, resolved against its folder, over
            // the values as written (see PATH_KEYS).
            .merge(resolved_paths(&path)?)
            // Only variables with a section (a double underscore) are
            // settings; LETTERPRESS_CONFIG and LETTERPRESS_LOG_FORMAT are not.
            .merge(
                Env::prefixed("LETTERPRESS_")
                    .filter(|k| k.as_str().contains("__"))
                    .split("__"),
            );
        let file_only = Figment::from(Toml::file(&path));
        for key in SECRET_KEYS {
            if file_only.find_value(key).is_ok() {
                bail!(
                    "{key} is set in {}: secrets come from the environment ({}) or a *_file key, never the config file",
                    path.display(),
                    variable(key)
                );
            }
        }
        // The SMTP password too, when it is written into the relay's URL.
        if let Ok(url) = file_only.find_value("delivery.smtp_url")
            && let Some(url) = url.as_str()
            && letterpress_core::url_has_password(url)
        {
            bail!(
                "delivery.smtp_url in {} carries a password ({}): secrets come from the environment ({}) or delivery.smtp_password_file, never the config file; keep only the user name in the URL",
                path.display(),
                letterpress_core::redact_url(url),
                variable("delivery.smtp_password")
            );
        }
        // And the IMAP password in the bounce mailbox's URL.
        if let Ok(url) = file_only.find_value("bounces.imap_url")
            && let Some(url) = url.as_str()
            && letterpress_core::url_has_password(url)
        {
            bail!(
                "bounces.imap_url in {} carries a password ({}): secrets come from the environment ({}) or bounces.imap_password_file, never the config file; keep only the user name in the URL",
                path.display(),
                letterpress_core::redact_url(url),
                variable("bounces.imap_password")
            );
        }
        let mut config: Config = figment
            .extract()
            .map_err(|e| anyhow::anyhow!(describe_figment_error(e)))?;
        config.file = path.is_file().then_some(path);
        config.check()?;
        Ok(config)
    }

    fn check(&self) -> anyhow::Result<()> {
        // Secrets come only from the environment (the file is refused
        // above), so a blank one is a variable set to nothing: a mistake
        // (an empty `$SECRET` in a unit file) that must not pass for "unset",
        // where the token secret would be generated afresh and every link
        // already sent would stop verifying.
        let secrets = [
            ("delivery.smtp_password", &self.delivery.smtp_password),
            ("server.secret", &self.server.secret),
            ("server.previous_secrets", &self.server.previous_secrets),
            ("server.webhook_secret", &self.server.webhook_secret),
            ("bounces.imap_password", &self.bounces.imap_password),
            (
                "webhooks.postmark.password",
                &self.webhooks.postmark.password,
            ),
            (
                "webhooks.mailgun.signing_key",
                &self.webhooks.mailgun.signing_key,
            ),
            ("webhooks.resend.secret", &self.webhooks.resend.secret),
        ];
        for (key, value) in secrets {
            if value.as_deref().is_some_and(|v| v.trim().is_empty()) {
                bail!(
                    "{} is set but blank: give {key} a value, or unset the variable",
                    variable(key)
                );
            }
        }
        if !self.newsletter.issue_url.contains("{slug}") {
            bail!(
                "newsletter.issue_url {:?} must contain {{slug}}",
                letterpress_core::redact_url(&self.newsletter.issue_url)
            );
        }
        if self.delivery.concurrency == 0 {
            bail!("delivery.concurrency must be at least 1");
        }
        Ok(())
    }

    /// The folder for generated state (the secret), next to the SQLite file.
    pub fn data_dir(&self) -> PathBuf {
        self.database
            .url
            .strip_prefix("sqlite://")
            .map(|p| p.split('?').next().unwrap_or(p))
            .and_then(|p| Path::new(p).parent().map(Path::to_path_buf))
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or_else(|| PathBuf::from("data"))
    }

    /// The SMTP password, from the environment or its file.
    pub fn smtp_password(&self) -> anyhow::Result<Option<String>> {
        secret_value(
            self.delivery.smtp_password.as_deref(),
            self.delivery.smtp_password_file.as_deref(),
            "delivery.smtp_password_file",
        )
    }

    /// The bounce mailbox's IMAP password, from the environment or its file.
    pub fn imap_password(&self) -> anyhow::Result<Option<String>> {
        secret_value(
            self.bounces.imap_password.as_deref(),
            self.bounces.imap_password_file.as_deref(),
            "bounces.imap_password_file",
        )
    }

    /// The webhook secret, from the environment or its file.
    pub fn webhook_secret(&self) -> anyhow::Result<Option<String>> {
        secret_value(
            self.server.webhook_secret.as_deref(),
            self.server.webhook_secret_file.as_deref(),
            "server.webhook_secret_file",
        )
    }

    /// The Postmark hook's password, from the environment or its file.
    pub fn postmark_password(&self) -> anyhow::Result<Option<String>> {
        secret_value(
            self.webhooks.postmark.password.as_deref(),
            self.webhooks.postmark.password_file.as_deref(),
            "webhooks.postmark.password_file",
        )
    }

    /// The Mailgun webhook signing key, from the environment or its file.
    pub fn mailgun_signing_key(&self) -> anyhow::Result<Option<String>> {
        secret_value(
            self.webhooks.mailgun.signing_key.as_deref(),
            self.webhooks.mailgun.signing_key_file.as_deref(),
            "webhooks.mailgun.signing_key_file",
        )
    }

    /// The Resend signing secret, from the environment or its file.
    pub fn resend_secret(&self) -> anyhow::Result<Option<String>> {
        secret_value(
            self.webhooks.resend.secret.as_deref(),
            self.webhooks.resend.secret_file.as_deref(),
            "webhooks.resend.secret_file",
        )
    }

    /// The `/metrics` bearer token, from the environment or its file.
    pub fn metrics_token(&self) -> anyhow::Result<Option<String>> {
        secret_value(
            self.server.metrics_token.as_deref(),
            self.server.metrics_token_file.as_deref(),
            "server.metrics_token_file",
        )
    }

    /// The token secret: from the environment, its file, or generated into
    /// `<data dir>/secret.key` on first use.
    pub fn token_secret(&self) -> anyhow::Result<String> {
        if let Some(s) = secret_value(
            self.server.secret.as_deref(),
            self.server.secret_file.as_deref(),
            "server.secret_file",
        )? {
            return Ok(s);
        }
        let path = self.data_dir().join("secret.key");
        if let Ok(s) = std::fs::read_to_string(&path) {
            return Ok(s.trim().to_string());
        }
        crate::files::create_private_dir(&self.data_dir())
            .with_context(|| format!("creating {}", self.data_dir().display()))?;
        let secret = new_secret();
        crate::files::write_private(&path, &secret)
            .with_context(|| format!("writing {}", path.display()))?;
        tracing::info!(path = %path.display(), "generated a new token secret");
        Ok(secret)
    }
}

/// The environment variable that sets `key` (`server.secret` ->
/// `LETTERPRESS_SERVER__SECRET`).
fn variable(key: &str) -> String {
    format!("LETTERPRESS_{}", key.to_uppercase().replace('.', "__"))
}

/// A secret from its variable (never blank: [`Config::load`] refuses that)
/// or, failing that, from the file `key` names.
fn secret_value(
    env: Option<&str>,
    file: Option<&Path>,
    key: &str,
) -> anyhow::Result<Option<String>> {
    if let Some(v) = env {
        return Ok(Some(v.to_string()));
    }
    match file {
        Some(f) => {
            let v = std::fs::read_to_string(f)
                .with_context(|| format!("{key}: cannot read {}", f.display()))?;
            let v = v.trim();
            if v.is_empty() {
                bail!("{key}: {} is empty", f.display());
            }
            Ok(Some(v.to_string()))
        }
        None => Ok(None),
    }
}

/// A new token secret: 32 random bytes, hex.
pub fn new_secret() -> String {
    use rand::Rng;
    let bytes: [u8; 32] = rand::rng().random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The path keys set in the config file at `file`, each made absolute
/// against the file's folder, as a provider to merge over the file; and
/// `database.url`'s SQLite path the same way.
fn resolved_paths(file: &Path) -> anyhow::Result<figment::providers::Serialized<toml::Table>> {
    let mut table = toml::Table::new();
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(_) => return Ok(figment::providers::Serialized::defaults(table)),
    };
    // A file that does not parse is reported by figment, with its line.
    let Ok(parsed) = text.parse::<toml::Table>() else {
        return Ok(figment::providers::Serialized::defaults(table));
    };
    let folder = file
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    let folder = std::path::absolute(&folder)
        .with_context(|| format!("cannot resolve the folder of {}", file.display()))?;
    let get = |key: &str| -> Option<&toml::Value> {
        let (section, name) = key.split_once('.')?;
        parsed.get(section)?.get(name)
    };
    let mut set = |key: &str, value: String| {
        if let Some((section, name)) = key.split_once('.') {
            let entry = table
                .entry(section.to_string())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            if let toml::Value::Table(t) = entry {
                t.insert(name.to_string(), toml::Value::String(value));
            }
        }
    };
    for key in PATH_KEYS {
        if let Some(toml::Value::String(p)) = get(key)
            && Path::new(p).is_relative()
        {
            set(key, folder.join(p).display().to_string());
        }
    }
    if let Some(toml::Value::String(url)) = get("database.url")
        && let Some(rest) = url.strip_prefix("sqlite://")
        && !rest.starts_with('/')
        && !rest.starts_with(':')
        && !rest.starts_with("file:")
    {
        set(
            "database.url",
            format!("sqlite://{}", folder.join(rest).display()),
        );
    }
    Ok(figment::providers::Serialized::defaults(table))
}

/// figment's errors name the key and the source; this puts them in one
/// line the way the rest of the CLI reports errors.
fn describe_figment_error(e: figment::Error) -> String {
    e.into_iter()
        .map(|e| {
            let key = if e.path.is_empty() {
                String::new()
            } else {
                format!("{}: ", e.path.join("."))
            };
            let source = e
                .metadata
                .as_ref()
                .map(|m| match &m.source {
                    // figment names only the prefix; the operator needs the variable.
                    _ if m.name.contains("environment") && !e.path.is_empty() => {
                        format!(
                            " (from the environment variable LETTERPRESS_{})",
                            e.path.join("__").to_uppercase()
                        )
                    }
                    Some(s) => format!(" (in {} {s})", m.name),
                    None => format!(" (in {})", m.name),
                })
                .unwrap_or_default();
            format!("invalid configuration: {key}{}{source}", e.kind)
        })
        .collect::<Vec<_>>()
        .join("\n")
}
