//! The bounce mailbox's IMAP connection: `bounces.imap_url` parsed, TLS
//! (implicit on `imaps://`, STARTTLS required on `imap://`), login, and the
//! few commands `letterpress bounces` needs, each bounded by
//! `bounces.timeout`. The wire is async-imap's; this module only knows
//! which commands to send.

use std::collections::HashSet;
use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use async_imap::Session;
use futures_util::TryStreamExt;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls;

use crate::config::Bounces;

/// The keyword a message left in place is marked with, so the next run
/// skips it without marking it `\Seen` for the person who reads the box.
pub(crate) const IGNORED_KEYWORD: &str = "$LetterpressIgnored";

/// Where and as whom to log in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    host: String,
    port: u16,
    implicit_tls: bool,
    user: String,
    /// The folder to read (`INBOX` unless the URL's path names one).
    pub(crate) folder: String,
}

impl Target {
    /// Parses `bounces.imap_url`.
    pub(crate) fn parse(url: &str) -> anyhow::Result<Target> {
        let shown = letterpress_core::redact_url(url);
        let parsed = url::Url::parse(url).with_context(|| format!("bounces.imap_url {shown:?}"))?;
        let implicit_tls = match parsed.scheme() {
            "imaps" => true,
            "imap" => false,
            other => bail!(
                "bounces.imap_url {shown:?}: scheme {other:?}, expected imaps:// (TLS) or imap:// (STARTTLS)"
            ),
        };
        let host = parsed
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| anyhow!("bounces.imap_url {shown:?} names no host"))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let user = percent_decode(parsed.username())
            .with_context(|| format!("bounces.imap_url {shown:?}: the user name"))?;
        if user.is_empty() {
            bail!("bounces.imap_url {shown:?} names no user (imaps://USER@HOST/FOLDER)");
        }
        let folder = percent_decode(parsed.path().trim_start_matches('/'))
            .with_context(|| format!("bounces.imap_url {shown:?}: the folder"))?;
        Ok(Target {
            host,
            port: parsed
                .port()
                .unwrap_or(if implicit_tls { 993 } else { 143 }),
            implicit_tls,
            user,
            folder: if folder.is_empty() {
                "INBOX".into()
            } else {
                folder
            },
        })
    }
}

fn percent_decode(s: &str) -> anyhow::Result<String> {
    let mut out = Vec::with_capacity(s.len());
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| anyhow!("a bad %-escape"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| anyhow!("not UTF-8 once %-decoded"))
}

/// A logged-in session with the folder selected.
pub(crate) struct Mailbox {
    session: Session<TlsStream<TcpStream>>,
    timeout: Duration,
    can_move: bool,
}

/// One fetched message.
pub(crate) struct Fetched {
    /// The raw message, or `None` when it is over the size limit (not
    /// fetched).
    pub(crate) raw: Option<Vec<u8>>,
    /// Its size as the server says.
    pub(crate) size: u32,
}

async fn timed<T, E>(
    timeout: Duration,
    what: &str,
    fut: impl Future<Output = Result<T, E>>,
) -> anyhow::Result<T>
where
    E: std::error::Error + Send + Sync + 'static,
{
    match tokio::time::timeout(timeout, fut).await {
        Ok(r) => r.with_context(|| format!("IMAP {what}")),
        Err(_) => bail!(
            "IMAP {what}: no answer in {}",
            humantime::format_duration(timeout)
        ),
    }
}

fn tls_connector(ca_file: Option<&Path>) -> anyhow::Result<TlsConnector> {
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let certs = CertificateDer::pem_file_iter(path)
                .with_context(|| format!("bounces.tls_ca_file: cannot read {}", path.display()))?
                .collect::<Result<Vec<_>, _>>()
                .with_context(|| {
                    format!(
                        "bounces.tls_ca_file: {} is not PEM certificates",
                        path.display()
                    )
                })?;
            if certs.is_empty() {
                bail!(
                    "bounces.tls_ca_file: {} holds no certificate",
                    path.display()
                );
            }
            for cert in certs {
                roots.add(cert).with_context(|| {
                    format!("bounces.tls_ca_file: {}: a bad certificate", path.display())
                })?;
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .context("TLS set-up")?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(TlsConnector::from(Arc::new(config)))
}

impl Mailbox {
    /// Connects, secures the connection, logs in and selects the folder.
    pub(crate) async fn open(
        target: &Target,
        password: &str,
        config: &Bounces,
    ) -> anyhow::Result<Mailbox> {
        let timeout = config.timeout;
        let connector = tls_connector(config.tls_ca_file.as_deref())?;
        let server_name = ServerName::try_from(target.host.clone())
            .with_context(|| format!("bounces.imap_url: {:?} is not a host name", target.host))?;
        let addr = format!("{}:{}", target.host, target.port);
        let tcp = timed(
            timeout,
            &format!("connect to {addr}"),
            TcpStream::connect(&addr),
        )
        .await?;
        let tls = if target.implicit_tls {
            timed(
                timeout,
                &format!("TLS with {addr}"),
                connector.connect(server_name, tcp),
            )
            .await?
        } else {
            let mut plain = async_imap::Client::new(tcp);
            let greeting = timed(timeout, "greeting", plain.read_response()).await?;
            if greeting.is_none() {
                bail!("IMAP {addr} closed the connection before its greeting");
            }
            timed(
                timeout,
                &format!(
                    "STARTTLS on {addr} (imap:// requires it; use imaps:// for TLS from the start)"
                ),
                plain.run_command_and_check_ok("STARTTLS", None),
            )
            .await?;
            timed(
                timeout,
                &format!("TLS with {addr}"),
                connector.connect(server_name, plain.into_inner()),
            )
            .await?
        };
        let mut client = async_imap::Client::new(tls);
        if target.implicit_tls {
            let greeting = timed(timeout, "greeting", client.read_response()).await?;
            if greeting.is_none() {
                bail!("IMAP {addr} closed the connection before its greeting");
            }
        }
        let login = tokio::time::timeout(timeout, client.login(&target.user, password)).await;
        let mut session = match login {
            Ok(Ok(s)) => s,
            Ok(Err((e, _))) => {
                return Err(anyhow!(e)).with_context(|| {
                    format!(
                        "IMAP login as {:?} at {addr} (the password: LETTERPRESS_BOUNCES__IMAP_PASSWORD or bounces.imap_password_file)",
                        target.user
                    )
                });
            }
            Err(_) => bail!(
                "IMAP login at {addr}: no answer in {}",
                humantime::format_duration(timeout)
            ),
        };
        let caps = timed(timeout, "CAPABILITY", session.capabilities()).await?;
        let can_move = caps.has_str("MOVE");
        timed(
            timeout,
            &format!("SELECT {:?}", target.folder),
            session.select(&target.folder),
        )
        .await?;
        Ok(Mailbox {
            session,
            timeout,
            can_move,
        })
    }

    /// The UIDs still to read: not deleted, not marked ignored; the lowest
    /// `max` of them.
    pub(crate) async fn pending(&mut self, max: usize) -> anyhow::Result<Vec<u32>> {
        let query = format!("UNDELETED UNKEYWORD {IGNORED_KEYWORD}");
        let found: HashSet<u32> =
            timed(self.timeout, "UID SEARCH", self.session.uid_search(&query)).await?;
        let mut uids: Vec<u32> = found.into_iter().collect();
        uids.sort_unstable();
        uids.truncate(max);
        Ok(uids)
    }

    /// One message, unless it is larger than `max_bytes`. `BODY.PEEK[]`:
    /// reading it does not mark it `\Seen`.
    pub(crate) async fn fetch(&mut self, uid: u32, max_bytes: usize) -> anyhow::Result<Fetched> {
        let size = self
            .fetch_one(uid, "(UID RFC822.SIZE)")
            .await?
            .size
            .unwrap_or(0);
        if size as usize > max_bytes {
            return Ok(Fetched { raw: None, size });
        }
        let fetch = self.fetch_one(uid, "(UID BODY.PEEK[])").await?;
        let raw = fetch
            .body()
            .map(<[u8]>::to_vec)
            .ok_or_else(|| anyhow!("IMAP UID FETCH {uid}: the server sent no body"))?;
        Ok(Fetched {
            raw: Some(raw),
            size,
        })
    }

    async fn fetch_one(
        &mut self,
        uid: u32,
        query: &str,
    ) -> anyhow::Result<async_imap::types::Fetch> {
        let timeout = self.timeout;
        let what = format!("UID FETCH {uid} {query}");
        let fetches: Vec<async_imap::types::Fetch> = timed(timeout, &what, async {
            let stream = self.session.uid_fetch(uid.to_string(), query).await?;
            stream.try_collect().await
        })
        .await?;
        fetches
            .into_iter()
            .find(|f| f.uid == Some(uid))
            .ok_or_else(|| anyhow!("IMAP {what}: the message is gone"))
    }

    /// Creates `folder` unless it exists.
    pub(crate) async fn ensure_folder(&mut self, folder: &str) -> anyhow::Result<()> {
        let listed: Vec<async_imap::types::Name> = timed(self.timeout, "LIST", async {
            let stream = self.session.list(Some(""), Some(folder)).await?;
            stream.try_collect().await
        })
        .await?;
        if listed.iter().any(|n| n.name() == folder) {
            return Ok(());
        }
        timed(
            self.timeout,
            &format!("CREATE {folder:?}"),
            self.session.create(folder),
        )
        .await
    }

    /// Moves the messages to `folder` (MOVE where the server has it, else
    /// COPY, `\Deleted` and EXPUNGE).
    pub(crate) async fn move_to(&mut self, uids: &[u32], folder: &str) -> anyhow::Result<()> {
        if uids.is_empty() {
            return Ok(());
        }
        let set = uid_set(uids);
        let what = format!("moving {} message(s) to {folder:?}", uids.len());
        if self.can_move {
            return timed(self.timeout, &what, self.session.uid_mv(&set, folder)).await;
        }
        timed(self.timeout, &what, self.session.uid_copy(&set, folder)).await?;
        self.store_flags(&set, "+FLAGS.SILENT (\\Deleted)").await?;
        let timeout = self.timeout;
        timed(timeout, "EXPUNGE", async {
            let stream = self.session.expunge().await?;
            stream.try_collect::<Vec<_>>().await.map(|_| ())
        })
        .await
    }

    /// Marks the messages with [`IGNORED_KEYWORD`], leaving them in place.
    pub(crate) async fn mark_ignored(&mut self, uids: &[u32]) -> anyhow::Result<()> {
        if uids.is_empty() {
            return Ok(());
        }
        self.store_flags(
            &uid_set(uids),
            &format!("+FLAGS.SILENT ({IGNORED_KEYWORD})"),
        )
        .await
        .context(
            "marking a non-bounce to skip next time (a server that keeps no keywords needs bounces.ignored_folder)",
        )
    }

    async fn store_flags(&mut self, set: &str, flags: &str) -> anyhow::Result<()> {
        let timeout = self.timeout;
        timed(timeout, &format!("UID STORE {flags}"), async {
            let stream = self.session.uid_store(set, flags).await?;
            stream.try_collect::<Vec<_>>().await.map(|_| ())
        })
        .await
    }

    /// Logs out (best effort: the work is done either way).
    pub(crate) async fn close(mut self) {
        let _ = tokio::time::timeout(self.timeout, self.session.logout()).await;
    }
}

fn uid_set(uids: &[u32]) -> String {
    uids.iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_with_their_defaults() {
        let t = Target::parse("imaps://bounces@mail.example.com").unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.implicit_tls),
            ("mail.example.com", 993, true)
        );
        assert_eq!((t.user.as_str(), t.folder.as_str()), ("bounces", "INBOX"));
        let t = Target::parse("imap://b%40example.com@127.0.0.1:1143/Bounces%20In").unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.implicit_tls),
            ("127.0.0.1", 1143, false)
        );
        assert_eq!(
            (t.user.as_str(), t.folder.as_str()),
            ("b@example.com", "Bounces In")
        );
        for bad in ["pop3://u@h", "imaps://h", "not a url", "imaps://u@/x"] {
            assert!(Target::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn an_error_never_shows_the_password() {
        let e = Target::parse("pop3://u:hunter2@h").unwrap_err();
        assert!(!format!("{e:#}").contains("hunter2"), "{e:#}");
    }
}
