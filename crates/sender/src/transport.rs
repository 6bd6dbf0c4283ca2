//! Where messages go: `.eml` files (the embedded default) or an SMTP relay.

use std::convert::Infallible;
use std::fmt::Write as _;
use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use lettre::{AsyncSmtpTransport, Tokio1Executor};

use crate::message::Outgoing;
use crate::policy::{self, Happened, NoReply, Verdict};
use crate::smtp::{SendError, SmtpClient, Stage, Target, TargetError, TrustedCa};

/// Why a transport cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// `delivery.smtp_url` did not parse.
    #[error("delivery.smtp_url {url:?} is not a usable SMTP address: {source}")]
    BadUrl {
        /// The URL as configured, its password redacted.
        url: String,
        /// lettre's reason.
        source: lettre::transport::smtp::Error,
    },
    /// `delivery.smtp_url` parsed but cannot be used (e.g. no TLS for the host name).
    #[error("delivery.smtp_url {url:?} cannot be used: {source}")]
    Unusable {
        /// The URL as configured, its password redacted.
        url: String,
        /// Why.
        source: TargetError,
    },
    /// `delivery.tls_ca_file` cannot be read or holds no certificate.
    #[error("delivery.tls_ca_file {path}: {reason}")]
    CaFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The outbox folder cannot be created.
    #[error("cannot create delivery.outbox_dir {path}: {source}")]
    Outbox {
        /// The folder.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// The result of handing one message to the transport.
#[derive(Debug, Clone)]
pub struct Attempt {
    /// What happened, as the outcome policy reads it.
    pub happened: Happened,
    /// The reply (or error) text, kept with the delivery.
    pub reply: String,
}

impl Attempt {
    /// What the attempt means (delivered, deferred, bounced, ...).
    pub fn verdict(&self) -> Verdict {
        policy::verdict(self.happened)
    }
}

/// A configured transport.
pub enum Transport {
    /// One `.eml` file per message under `dir/<slug>/`.
    File {
        /// `delivery.outbox_dir`.
        dir: PathBuf,
    },
    /// A pooled async SMTP client with at most `delivery.concurrency` connections.
    Smtp(SmtpClient),
}

/// SMTP connection settings.
#[derive(Debug, Clone)]
pub struct SmtpSettings {
    /// `smtp://host:port` (STARTTLS when offered),
    /// `smtp://user@host:587?tls=required` (STARTTLS required) or
    /// `smtps://host:465` (implicit TLS).
    pub url: String,
    /// A PEM file of a private CA to trust for the relay's certificate,
    /// besides the public roots (`delivery.tls_ca_file`).
    pub tls_ca_file: Option<PathBuf>,
    /// The AUTH password, from the environment, never from the TOML file.
    pub password: Option<String>,
    /// Connections kept open at most.
    pub connections: u32,
    /// Per-command timeout; a stalled server counts as a deferral.
    pub timeout: Duration,
}

impl Transport {
    /// A file transport writing under `dir` (created 0700 if missing: the
    /// messages carry addresses, names and unsubscribe links).
    pub fn file(dir: impl Into<PathBuf>) -> Result<Self, TransportError> {
        let dir = dir.into();
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder
            .create(&dir)
            .map_err(|source| TransportError::Outbox {
                path: dir.clone(),
                source,
            })?;
        Ok(Self::File { dir })
    }

    /// An SMTP transport from `settings`.
    pub fn smtp(settings: &SmtpSettings) -> Result<Self, TransportError> {
        // Errors print the URL, which may carry the AUTH password.
        let url = || letterpress_core::redact_url(&settings.url);
        let bad = |source| TransportError::BadUrl { url: url(), source };
        // lettre's parser decides which URLs are valid (and words the
        // error); the client below reads the same parts from the URL.
        AsyncSmtpTransport::<Tokio1Executor>::from_url(&settings.url).map_err(bad)?;
        // The password never belongs in the config file; it comes from the
        // environment and is used with the URL's user name.
        let ca = match &settings.tls_ca_file {
            Some(path) => {
                let ca_error = |reason: String| TransportError::CaFile {
                    path: path.clone(),
                    reason,
                };
                let pem =
                    std::fs::read(path).map_err(|e| ca_error(format!("cannot read it: {e}")))?;
                TrustedCa::from_pem(&pem).map_err(|e| ca_error(e.to_string()))?
            }
            None => TrustedCa::default(),
        };
        let target = Target::from_url(&settings.url, settings.password.as_deref(), &ca)
            .map_err(|source| TransportError::Unusable { url: url(), source })?;
        Ok(Self::Smtp(SmtpClient::new(
            target,
            settings.timeout,
            settings.connections.max(1) as usize,
        )))
    }

    /// Sends `message`; `slug` and `file_stem` name the file for the file transport.
    pub async fn send(&self, message: &Outgoing, slug: &str, file_stem: &str) -> Attempt {
        let go = || async { Ok::<(), Infallible>(()) };
        match self.send_if(message, slug, file_stem, go).await {
            Ok(attempt) => attempt,
            Err(never) => match never {},
        }
    }

    /// [`Transport::send`], asking `still_wanted` at the last moment: over
    /// SMTP inside the transaction, after the recipients are accepted and
    /// before the message goes (the transaction is abandoned by dropping
    /// the connection); for the file transport before writing. `Err(why)`
    /// means nothing was delivered.
    pub async fn send_if<T, F, Fut>(
        &self,
        message: &Outgoing,
        slug: &str,
        file_stem: &str,
        still_wanted: F,
    ) -> Result<Attempt, T>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<(), T>>,
    {
        Ok(match self {
            Self::File { dir } => {
                still_wanted().await?;
                let folder = dir.join(slug);
                let path = folder.join(format!("{file_stem}.eml"));
                let tmp = folder.join(format!(".{file_stem}.eml.tmp"));
                let bytes = message.formatted();
                // Write then rename, so a crash never leaves half a message
                // that a reader (or a re-send) would mistake for a whole one.
                let result = async {
                    let mut builder = tokio::fs::DirBuilder::new();
                    builder.recursive(true);
                    #[cfg(unix)]
                    builder.mode(0o700);
                    builder.create(&folder).await?;
                    tokio::fs::write(&tmp, &bytes).await?;
                    tokio::fs::rename(&tmp, &path).await
                }
                .await;
                match result {
                    Ok(()) => Attempt {
                        happened: Happened::Written,
                        reply: format!("written to {}", path.display()),
                    },
                    Err(e) => Attempt {
                        happened: Happened::Unavailable,
                        reply: format!("cannot write {}: {e}", path.display()),
                    },
                }
            }
            Self::Smtp(smtp) => match smtp
                .send_gated(
                    message.envelope(),
                    (message.head().as_bytes(), message.body()),
                    still_wanted,
                )
                .await?
            {
                Ok(response) => {
                    let code = u16::from(response.code());
                    // One buffer, sized for a usual reply ("250 2.0.0 Ok:
                    // queued as 4Xyz…"), where a Vec and a join made three.
                    let mut reply = String::with_capacity(64);
                    let _ = write!(reply, "{code} ");
                    for (i, line) in response.message().enumerate() {
                        if i > 0 {
                            reply.push(' ');
                        }
                        reply.push_str(line);
                    }
                    Attempt {
                        // A positive reply: its enhanced code (2.0.0) adds
                        // nothing, so its text is not searched for one.
                        happened: Happened::Reply {
                            stage: Stage::EndOfData,
                            code,
                            enhanced: None,
                        },
                        reply,
                    }
                }
                Err(e) => Attempt {
                    happened: happened(&e),
                    reply: e.to_string(),
                },
            },
        })
    }

    /// Closes pooled connections politely (QUIT).
    pub async fn shutdown(&self) {
        if let Self::Smtp(smtp) = self {
            smtp.shutdown().await;
        }
    }
}

/// `<delivery id>-<address>` with every character that is not safe in a
/// file name on common file systems replaced by `_`: the id keeps names
/// unique, the address tells an operator who the `.eml` file was for.
/// Every file the file transport writes is named by it (test copies, which
/// have no delivery, use id 0), so no address can name a path.
pub fn outbox_file_stem(delivery_id: i64, email: &str) -> String {
    let address: String = email
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '@' | '.' | '-' | '_' | '+') {
                c
            } else {
                '_'
            }
        })
        // File names are limited to 255 bytes; addresses to 254 characters.
        .take(200)
        .collect();
    format!("{delivery_id}-{address}")
}

/// What a failed send means to the outcome policy.
fn happened(e: &SendError) -> Happened {
    match e {
        SendError::Refused(r) => Happened::Reply {
            stage: r.stage,
            code: r.code,
            enhanced: r.enhanced,
        },
        SendError::Broken { .. } | SendError::Client { .. } | SendError::Connect(_) => {
            Happened::NoReply(NoReply::Network)
        }
        // The last two are settings to fix: retried, so that the
        // deliveries go once they are fixed.
        SendError::Tls { .. } | SendError::Untrusted { .. } | SendError::PlainAuth { .. } => {
            Happened::NoReply(NoReply::Tls)
        }
        SendError::Timeout { .. } => Happened::NoReply(NoReply::Timeout),
        // Refused here for good: retrying sends the same bytes to the
        // same relay.
        SendError::Unsupported(_) | SendError::BareLineEnd(_) => Happened::Refused,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::smtp::{BareLineEnd, Reply};

    /// `SendError`'s own transient/permanent split and the policy agree:
    /// what it calls permanent is never retried, what it calls transient
    /// always is.
    #[test]
    fn the_error_class_and_the_policy_agree() {
        let refused = |stage, code, text: &str| {
            SendError::Refused(Reply {
                stage,
                code,
                enhanced: crate::smtp::EnhancedCode::find(text),
                text: text.to_string(),
            })
        };
        let errors = [
            refused(Stage::Rcpt, 550, "5.1.1 user unknown"),
            refused(Stage::EndOfData, 554, "5.7.1 spam"),
            refused(Stage::Mail, 553, "5.1.8 sender domain"),
            refused(Stage::Rcpt, 421, "4.7.0 slow down"),
            refused(Stage::Mail, 451, "4.3.0 try later"),
            SendError::Timeout {
                stage: Stage::Data,
                after: Duration::from_secs(30),
            },
            SendError::Connect(std::io::ErrorKind::ConnectionRefused.into()),
            SendError::Unsupported("no 8BITMIME"),
            SendError::BareLineEnd(BareLineEnd {
                offset: 3,
                byte: b'\n',
            }),
        ];
        for e in errors {
            let retried = matches!(
                policy::verdict(happened(&e)),
                Verdict::Deferred | Verdict::DeferredSlowDown
            );
            assert_eq!(e.is_permanent(), !retried, "{e}");
        }
    }
}
