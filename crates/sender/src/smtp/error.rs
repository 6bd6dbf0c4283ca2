//! Why a message was not accepted, typed: the stage it failed at, the
//! reply when one came, and whether trying again can help.

use std::error::Error as _;
use std::time::Duration;

use lettre::transport::smtp::Error as SmtpError;

use super::reply::{Reply, Stage};
use super::wire::BareLineEnd;

/// Why a message was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The server answered with a refusal (4xx, 5xx, or a final reply
    /// that makes no sense where it came).
    #[error("{0}")]
    Refused(Reply),
    /// The connection failed with no reply to read: closed, reset, or
    /// what came back was not an SMTP reply.
    #[error("connection failed at {stage}: {source}")]
    Broken {
        /// What was being waited for.
        stage: Stage,
        /// lettre's error.
        source: SmtpError,
    },
    /// TLS failed (handshake, certificate, the encrypted stream).
    #[error("TLS failed at {stage}: {source}")]
    Tls {
        /// What was being done.
        stage: Stage,
        /// lettre's error.
        source: SmtpError,
    },
    /// The server's certificate did not verify (unknown CA, wrong name,
    /// expired, ...).
    #[error(
        "the certificate of {host} is not trusted ({reason}); if the relay uses a private CA, \
         set delivery.tls_ca_file to that CA's certificate (PEM)"
    )]
    Untrusted {
        /// The host name (or address) the certificate was checked against.
        host: String,
        /// What rustls found wrong with it.
        reason: String,
    },
    /// The connection is plain text (no STARTTLS offered) and the server
    /// is not on a loopback address: the AUTH password is not sent.
    #[error(
        "refusing to send the AUTH password in plain text to {host}, which offers no STARTTLS: \
         use smtps:// or ?tls=required in delivery.smtp_url (plain-text AUTH goes only to a \
         loopback address)"
    )]
    PlainAuth {
        /// The relay's host.
        host: String,
    },
    /// lettre would not go on with this server, e.g. `tls=required` and
    /// no STARTTLS offered, or no AUTH mechanism in common.
    #[error("cannot go on at {stage}: {source}")]
    Client {
        /// What was being done.
        stage: Stage,
        /// lettre's error.
        source: SmtpError,
    },
    /// The server did not answer within the timeout.
    #[error("no reply from the server within {after:?} at {stage}")]
    Timeout {
        /// What was being waited for.
        stage: Stage,
        /// `delivery.timeout`.
        after: Duration,
    },
    /// The TCP connection could not be made.
    #[error("cannot connect to the server: {0}")]
    Connect(std::io::Error),
    /// The message cannot go to this server: it (or an address) is not
    /// ASCII and the server offers no 8BITMIME (or SMTPUTF8). Found before
    /// anything of the message was sent.
    #[error("{0}")]
    Unsupported(&'static str),
    /// A line of the message does not end in CRLF (see [`BareLineEnd`]).
    /// Found before anything of the message was sent.
    #[error(transparent)]
    BareLineEnd(#[from] BareLineEnd),
}

/// What rustls said was wrong with the server's certificate, when that is
/// why `e` happened: lettre keeps rustls's error inside an I/O error
/// inside its own.
fn certificate_error(e: &SmtpError) -> Option<String> {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = e.source();
    while let Some(err) = cause {
        let inner = err
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .map(|inner| inner as &(dyn std::error::Error + 'static))
            .unwrap_or(err);
        if let Some(rustls::Error::InvalidCertificate(why)) = inner.downcast_ref::<rustls::Error>()
        {
            return Some(match why {
                rustls::CertificateError::UnknownIssuer => "issued by an unknown CA".to_string(),
                other => other.to_string(),
            });
        }
        cause = if std::ptr::addr_eq(inner, err) {
            err.source()
        } else {
            Some(inner)
        };
    }
    None
}

/// Whether the same message may succeed later.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// It may: a 4xx, a network failure, a timeout.
    Transient,
    /// It will not: a 5xx, or a message this relay cannot take.
    Permanent,
}

impl SendError {
    /// lettre's error for `stage`, sorted by what it says: a reply (with
    /// its code and text), TLS, lettre's own refusal, or a broken
    /// connection.
    pub(super) fn from_smtp(stage: Stage, e: SmtpError) -> SendError {
        if let Some(code) = e.status() {
            // lettre keeps the reply's lines, joined, as the error's source.
            let text = e.source().map(ToString::to_string).unwrap_or_default();
            return SendError::Refused(Reply::new(stage, u16::from(code), text));
        }
        if let Some(reason) = certificate_error(&e) {
            // Named for what it is, once: lettre's own words for it are
            // "Connection error: invalid peer certificate: ...". The host
            // is filled in by the caller that knows it (`for_host`).
            return SendError::Untrusted {
                host: String::new(),
                reason,
            };
        }
        if e.is_tls() {
            SendError::Tls { stage, source: e }
        } else if e.is_client() {
            SendError::Client { stage, source: e }
        } else {
            SendError::Broken { stage, source: e }
        }
    }

    /// Names `host` in an [`SendError::Untrusted`] made without it.
    pub(super) fn for_host(self, host: &str) -> SendError {
        match self {
            SendError::Untrusted { reason, .. } => SendError::Untrusted {
                host: host.to_string(),
                reason,
            },
            other => other,
        }
    }

    /// Transient or permanent.
    pub fn class(&self) -> Class {
        match self {
            Self::Refused(r) if r.code / 100 == 5 => Class::Permanent,
            // Permanent for this relay: it will not learn 8BITMIME or
            // SMTPUTF8 in the next four days of retries.
            Self::Unsupported(_) | Self::BareLineEnd(_) => Class::Permanent,
            _ => Class::Transient,
        }
    }

    /// Whether trying the same message again is pointless.
    pub fn is_permanent(&self) -> bool {
        self.class() == Class::Permanent
    }

    /// Where in the session it failed; `None` for a refusal made here
    /// before anything was sent.
    pub fn stage(&self) -> Option<Stage> {
        match self {
            Self::Refused(Reply { stage, .. })
            | Self::Broken { stage, .. }
            | Self::Tls { stage, .. }
            | Self::Client { stage, .. }
            | Self::Timeout { stage, .. } => Some(*stage),
            Self::Connect(_) | Self::Untrusted { .. } | Self::PlainAuth { .. } => {
                Some(Stage::Session)
            }
            Self::Unsupported(_) | Self::BareLineEnd(_) => None,
        }
    }

    /// The server's reply (stage, basic and enhanced code, text), when
    /// one came.
    pub fn reply(&self) -> Option<&Reply> {
        match self {
            Self::Refused(r) => Some(r),
            _ => None,
        }
    }
}
