//! Why a message was not accepted.

use std::time::Duration;

use lettre::transport::smtp::Error as SmtpError;

/// Why a message was not accepted.
#[derive(Debug)]
pub enum SendError {
    /// The server refused, or the connection failed, as lettre reports it.
    Smtp(SmtpError),
    /// The server did not answer within the timeout.
    Timeout(Duration),
    /// The TCP connection could not be made.
    Connect(std::io::Error),
    /// The message cannot go to this server (e.g. 8-bit content and no 8BITMIME).
    Unsupported(&'static str),
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Smtp(e) => e.fmt(f),
            Self::Timeout(t) => write!(f, "no reply from the server within {t:?}"),
            Self::Connect(e) => write!(f, "cannot connect to the server: {e}"),
            Self::Unsupported(why) => f.write_str(why),
        }
    }
}

impl From<SmtpError> for SendError {
    fn from(e: SmtpError) -> Self {
        Self::Smtp(e)
    }
}
