//! One SMTP session, opened and made ready for transactions: TCP with
//! `TCP_NODELAY` (or lettre's implicit TLS), STARTTLS, the EHLO that tells
//! whether the server pipelines, AUTH. Every step is bounded by the
//! timeout.

use std::future::Future;
use std::time::Duration;

use lettre::transport::smtp::Error as SmtpError;
use lettre::transport::smtp::authentication::DEFAULT_MECHANISMS;
use lettre::transport::smtp::client::AsyncSmtpConnection;

use super::error::SendError;
use super::reply::Stage;
use super::target::{Security, Target};

/// A connection and what this client learnt about its server.
pub(super) struct Conn {
    pub(super) inner: AsyncSmtpConnection,
    /// The server offers PIPELINING: MAIL, RCPT and DATA may go in one write.
    pub(super) pipelining: bool,
    /// Bounds every command and the message (`delivery.timeout`).
    pub(super) timeout: Duration,
}

impl Conn {
    /// Opens a connection to `target`, secured and authenticated as it says.
    pub(super) async fn open(target: &Target, timeout: Duration) -> Result<Conn, SendError> {
        Self::open_unnamed(target, timeout)
            .await
            .map_err(|e| e.for_host(&target.host))
    }

    async fn open_unnamed(target: &Target, timeout: Duration) -> Result<Conn, SendError> {
        let t = target;
        // Whether the connection stays on this machine, where plain text
        // exposes nothing (smtps is never plain, so it does not matter there).
        let mut loopback = false;
        let mut conn = match &t.security {
            Security::Wrapper(params) => {
                timed(
                    timeout,
                    Stage::Session,
                    AsyncSmtpConnection::connect_tokio1(
                        (t.host.as_str(), t.port),
                        Some(timeout),
                        &t.hello,
                        Some(params.clone()),
                        None,
                    ),
                )
                .await?
            }
            _ => {
                let tcp = match tokio::time::timeout(
                    timeout,
                    tokio::net::TcpStream::connect((t.host.as_str(), t.port)),
                )
                .await
                {
                    Ok(Ok(tcp)) => tcp,
                    Ok(Err(e)) => return Err(SendError::Connect(e)),
                    Err(_) => {
                        return Err(SendError::Timeout {
                            stage: Stage::Session,
                            after: timeout,
                        });
                    }
                };
                // See the module documentation: without this, every message
                // waits for a delayed ACK before its final dot goes out.
                let _ = tcp.set_nodelay(true);
                loopback = tcp
                    .peer_addr()
                    .is_ok_and(|a| a.ip().to_canonical().is_loopback());
                timed(
                    timeout,
                    Stage::Session,
                    AsyncSmtpConnection::connect_with_transport(Box::new(tcp), &t.hello),
                )
                .await?
            }
        };
        match &t.security {
            Security::Opportunistic(params) if conn.can_starttls() => {
                timed(
                    timeout,
                    Stage::Session,
                    conn.starttls(params.clone(), &t.hello),
                )
                .await?;
            }
            Security::Required(params) => {
                timed(
                    timeout,
                    Stage::Session,
                    conn.starttls(params.clone(), &t.hello),
                )
                .await?;
            }
            Security::Opportunistic(_) | Security::Wrapper(_) => {}
        }
        if t.credentials.is_some() && !may_authenticate(conn.is_encrypted(), loopback) {
            let _ = tokio::time::timeout(Duration::from_secs(1), conn.abort()).await;
            return Err(SendError::PlainAuth {
                host: t.host.clone(),
            });
        }
        // Before AUTH: a new EHLO after it would, on some servers, forget it.
        let pipelining = offers_pipelining(&mut conn, target, timeout).await?;
        if let Some(credentials) = &t.credentials {
            timed(
                timeout,
                Stage::Session,
                conn.auth(DEFAULT_MECHANISMS, credentials),
            )
            .await?;
        }
        Ok(Conn {
            inner: conn,
            pipelining,
            timeout,
        })
    }

    /// Closes the connection with a bounded, best-effort QUIT: the server
    /// may already be gone.
    pub(super) async fn close(mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(1), self.inner.abort()).await;
    }
}

/// Whether the AUTH password may be sent over this connection: when it is
/// encrypted, or when it never leaves the machine.
fn may_authenticate(encrypted: bool, loopback: bool) -> bool {
    encrypted || loopback
}

/// Asks the server's EHLO keywords again and looks for PIPELINING
/// (lettre's `ServerInfo` drops the keywords it does not use). A
/// repeated EHLO is allowed at any time outside a transaction (RFC 5321
/// 4.1.4); a server that refuses it anyway is simply not pipelined to.
async fn offers_pipelining(
    conn: &mut AsyncSmtpConnection,
    target: &Target,
    timeout: Duration,
) -> Result<bool, SendError> {
    let ehlo = conn.command(format!("EHLO {}\r\n", target.hello));
    let reply = match timed(timeout, Stage::Session, ehlo).await {
        Ok(reply) => reply,
        Err(SendError::Refused(refusal)) => {
            tracing::debug!(reply = %refusal, "the server refused a second EHLO; not pipelining");
            return Ok(false);
        }
        Err(e) => return Err(e),
    };
    Ok(reply.message().skip(1).any(|line| {
        line.split_whitespace()
            .next()
            .is_some_and(|k| k.eq_ignore_ascii_case("PIPELINING"))
    }))
}

/// `step` of `stage`, its failure typed, and failing with
/// [`SendError::Timeout`] if it takes longer than `timeout`.
pub(super) async fn timed<T>(
    timeout: Duration,
    stage: Stage,
    step: impl Future<Output = Result<T, SmtpError>>,
) -> Result<T, SendError> {
    match tokio::time::timeout(timeout, step).await {
        Ok(result) => result.map_err(|e| SendError::from_smtp(stage, e)),
        Err(_) => Err(SendError::Timeout {
            stage,
            after: timeout,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::may_authenticate;

    #[test]
    fn the_password_goes_only_over_tls_or_loopback() {
        // (encrypted, loopback, may send the password)
        for (encrypted, loopback, may) in [
            (true, true, true),
            (true, false, true),
            (false, true, true),
            (false, false, false),
        ] {
            assert_eq!(
                may_authenticate(encrypted, loopback),
                may,
                "encrypted {encrypted}, loopback {loopback}"
            );
        }
    }
}
