//! The command line, as the contract's "Command line" section lists it.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

/// Self-hosted newsletter delivery: Markdown issues to MJML email, a
/// subscriber list on SQLite or PostgreSQL, and a durable SMTP queue.
#[derive(Debug, Parser)]
#[command(name = "letterpress", version, about)]
pub struct Cli {
    /// Config file (default config/letterpress.toml).
    #[arg(long, global = true, env = "LETTERPRESS_CONFIG")]
    pub config: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// Whether the command runs its tasks on one thread. Delivery (`send`,
    /// `worker`) waits on sockets and on the database's own thread; spread
    /// over several runtime threads its tasks kept waking one another
    /// across threads: on one thread a send makes half the context
    /// switches and uses about an eighth less CPU, which leaves the relay
    /// on the same machine more of it (`benches/README.md`). `serve`
    /// answers HTTP requests too and keeps a thread per core.
    pub fn single_threaded(&self) -> bool {
        matches!(
            self.command,
            Command::Send(_) | Command::Worker | Command::ComposeStored { .. }
        )
    }
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Render an issue to DIR/email.html, DIR/email.txt and DIR/email.mjml.
    Render {
        /// The issue file (Markdown with front matter).
        issue: PathBuf,
        /// Output folder (default out/<slug>/).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Print slug, subject, preheader, sizes and warnings as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Lint an issue: errors exit 1, warnings exit 0.
    Check {
        /// The issue file.
        issue: PathBuf,
        /// Also fetch every link and image (HEAD, then GET), following
        /// redirects: a broken one exits 1.
        #[arg(long)]
        links: bool,
        /// With --links: report broken links but exit 0.
        #[arg(long, requires = "links")]
        warn_only: bool,
        /// With --links: time for one request.
        #[arg(long, value_parser = humantime::parse_duration, default_value = "10s", requires = "links")]
        link_timeout: std::time::Duration,
    },
    /// Manage the subscriber list.
    #[command(subcommand)]
    Subscribers(SubscribersCommand),
    /// Send an issue to every active subscriber (or test copies with --to).
    Send(SendArgs),
    /// Delivery counts per issue.
    Status {
        /// Only this issue.
        slug: Option<String>,
        /// One JSON array on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Queue an issue's failed deliveries again.
    RetryFailed {
        /// The issue's slug.
        slug: String,
    },
    /// HTTP server, scheduler and delivery worker in one process.
    Serve,
    /// The delivery worker alone (several may share one PostgreSQL).
    Worker,
    /// Apply database migrations.
    Migrate,
    /// Write a commented letterpress.toml for the Zola or Hugo site in
    /// DIR (default: here), with a token secret and a DKIM key.
    Init(InitArgs),
    /// DKIM keys.
    #[command(subcommand)]
    Dkim(DkimCommand),
    /// The DNS records to publish for the From domain (DKIM, SPF, DMARC).
    Dns {
        /// Look the records up and say which are missing or differ.
        #[arg(long)]
        check: bool,
        /// The DNS server to ask (`IP` or `IP:PORT`; default: dns.resolver,
        /// else the system's).
        #[arg(long)]
        resolver: Option<String>,
    },
    /// Check the configuration, DNS, relay and public URL: pass, warn or
    /// fail, with the fix for each.
    Doctor {
        /// The DNS server to ask (as for `dns`).
        #[arg(long)]
        resolver: Option<String>,
    },
    /// Internal: compose ISSUE and write its stored form (the JSON a
    /// store keeps) on stdout. `serve`'s scheduler runs this in a child
    /// process, so that an issue that crashes the composer cannot take the
    /// server down.
    #[command(hide = true, name = "compose-stored")]
    ComposeStored {
        /// The issue file.
        issue: PathBuf,
    },
    /// Process the bounce mailbox once (`bounces.imap_url`): DSNs and
    /// feedback reports become bounces and complaints, then move to
    /// `bounces.done_folder`; anything else is left alone.
    Bounces,
    /// Copy the SQLite database to FILE while letterpress may be running.
    Backup {
        /// Where to write the copy (must not exist).
        file: PathBuf,
    },
}

/// `letterpress init …`
#[derive(Debug, Args)]
pub struct InitArgs {
    /// The site's root folder (default: the working directory).
    #[arg(long)]
    pub site: Option<PathBuf>,
    /// The content section that holds the newsletter (e.g. `newsletter`).
    #[arg(long)]
    pub section: Option<String>,
    /// The site's address, when no Zola or Hugo config says it.
    #[arg(long)]
    pub base_url: Option<String>,
    /// The newsletter's name (default: the site's title).
    #[arg(long)]
    pub title: Option<String>,
    /// The DKIM selector of the key generated.
    #[arg(long, default_value = "letterpress")]
    pub selector: String,
    /// Replace an existing letterpress.toml (the secret and the key are kept).
    #[arg(long)]
    pub force: bool,
}

/// `letterpress dkim …`
#[derive(Debug, Subcommand)]
pub enum DkimCommand {
    /// Generate a signing key (RSA-2048, or Ed25519 for a second signature).
    Keygen {
        /// The selector the key is published under.
        #[arg(long)]
        selector: Option<String>,
        /// An Ed25519 key (RFC 8463), signed alongside the RSA one.
        #[arg(long)]
        ed25519: bool,
        /// Replace an existing key file.
        #[arg(long)]
        force: bool,
    },
}

/// `letterpress subscribers …`
#[derive(Debug, Subcommand)]
pub enum SubscribersCommand {
    /// Add (or update) one subscriber as active.
    Add {
        /// The address.
        email: String,
        /// Display name.
        #[arg(long)]
        name: Option<String>,
        /// Tags (repeatable).
        #[arg(long = "tag")]
        tags: Vec<String>,
        /// Reactivate the address even if it unsubscribed, bounced or complained.
        #[arg(long)]
        resubscribe: bool,
    },
    /// Import a CSV file with a header row (`email` required).
    Import {
        /// The CSV file (listmonk and Mailchimp exports work as they are).
        file: PathBuf,
        /// Validate and count without writing.
        #[arg(long)]
        dry_run: bool,
        /// Any rejected row fails the import (exit 1) and nothing is
        /// written; with --dry-run, a check of the file.
        #[arg(long)]
        strict: bool,
        /// Reactivate suppressed addresses found in the file.
        #[arg(long)]
        resubscribe: bool,
    },
    /// Export every subscriber as CSV (round-trips through import; cells a
    /// spreadsheet would run as a formula get a leading `'`, which import
    /// takes off again).
    Export {
        /// Write here instead of stdout.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// List subscribers.
    List {
        /// Only this status.
        #[arg(long)]
        status: Option<String>,
        /// One JSON array on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Unsubscribe an address (kept as a suppression).
    Remove {
        /// The address.
        email: String,
        /// Also erase the personal data, keeping only a keyed hash so the
        /// address stays suppressed.
        #[arg(long)]
        forget: bool,
    },
}

/// `letterpress send …`
#[derive(Debug, Args)]
pub struct SendArgs {
    /// The issue file (not with --due).
    #[arg(required_unless_present = "due", conflicts_with = "due")]
    pub issue: Option<PathBuf>,
    /// Send a test copy to these addresses only, outside the list and the ledger.
    #[arg(long = "to")]
    pub to: Vec<String>,
    /// Compose and count, write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Do not ask for confirmation.
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// Stop waiting for deferred deliveries after this long.
    #[arg(long, default_value = "15m", value_parser = humantime::parse_duration)]
    pub wait: Duration,
    /// Send every issue in schedule.issues_dir whose send_at has come.
    #[arg(long)]
    pub due: bool,
    /// Send even though the file changed since this slug was first sent.
    #[arg(long)]
    pub allow_changed: bool,
}
