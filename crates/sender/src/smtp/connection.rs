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
use super::socket::{CountedTcp, Flushes};
use super::target::{Security, Target};

/// A connection and what this client learnt about its server.
pub(super) struct Conn {
    pub(super) inner: AsyncSmtpConnection,
    /// The server offers PIPELINING: MAIL, RCPT and DATA may go in one write.
    pub(super) pipelining: bool,
    /// Bounds every command and the message (`delivery.timeout`).
    pub(super) timeout: Duration,
    /// The completed flushes of the TCP stream under the session (see
    /// `socket.rs`); `None` on implicit TLS, where lettre opens the stream.
    pub(super) flushes: Option<Flushes>,
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
        let (conn, loopback, flushes) = connect(t, timeout).await?;
        let (mut conn, secured, flushes) = secure(conn, loopback, flushes, t, timeout).await?;
        if let Secured::PlainOnLoopback(why) = &secured {
            static SAID: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
            if !SAID.swap(true, std::sync::atomic::Ordering::Relaxed) {
                tracing::warn!(
                    error = %why,
                    "the relay is on this machine and its certificate does not verify: sending in \
                     plain text, which does not leave the machine (set delivery.tls_ca_file to encrypt)"
                );
            }
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
            flushes,
        })
    }

    /// Closes the connection with a bounded, best-effort QUIT: the server
    /// may already be gone.
    pub(super) async fn close(mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(1), self.inner.abort()).await;
    }
}

/// How a connection was secured by [`secure`].
#[derive(Debug)]
enum Secured {
    /// `smtps://`: TLS from the first byte.
    Implicit,
    /// STARTTLS, offered and done.
    StartTls,
    /// The server offers no STARTTLS, and the URL does not require it.
    NotOffered,
    /// The URL says nothing of TLS, the server is on a loopback address,
    /// and its certificate did not verify (this error): plain text on a new
    /// connection, as before letterpress took STARTTLS by default. A relay
    /// elsewhere gets no such fallback.
    PlainOnLoopback(SendError),
}

/// TCP (with `TCP_NODELAY`, its flushes counted) and the greeting, or
/// lettre's implicit TLS; whether the server is on a loopback address; and
/// the count of the TCP stream's flushes, when it is ours.
async fn connect(
    t: &Target,
    timeout: Duration,
) -> Result<(AsyncSmtpConnection, bool, Option<Flushes>), SendError> {
    if let Security::Wrapper(params) = &t.security {
        let conn = timed(
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
        .await?;
        // Never plain, so whether it is loopback does not matter.
        return Ok((conn, false, None));
    }
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
    // See the module documentation: without this, every message waits for
    // a delayed ACK before its final dot goes out.
    let _ = tcp.set_nodelay(true);
    let loopback = tcp
        .peer_addr()
        .is_ok_and(|a| a.ip().to_canonical().is_loopback());
    let (tcp, flushes) = CountedTcp::new(tcp);
    let conn = timed(
        timeout,
        Stage::Session,
        AsyncSmtpConnection::connect_with_transport(Box::new(tcp), &t.hello),
    )
    .await?;
    Ok((conn, loopback, Some(flushes)))
}

/// STARTTLS as `t.security` says (see [`Secured`]); `flushes` is
/// [`connect`]'s, and those of the stream the connection ends up on.
async fn secure(
    mut conn: AsyncSmtpConnection,
    loopback: bool,
    flushes: Option<Flushes>,
    t: &Target,
    timeout: Duration,
) -> Result<(AsyncSmtpConnection, Secured, Option<Flushes>), SendError> {
    let params = match &t.security {
        Security::Wrapper(_) => return Ok((conn, Secured::Implicit, flushes)),
        Security::Required(params) => params,
        Security::Unspecified(params) | Security::Opportunistic(params) => {
            if !conn.can_starttls() {
                return Ok((conn, Secured::NotOffered, flushes));
            }
            params
        }
    };
    match timed(
        timeout,
        Stage::Session,
        conn.starttls(params.clone(), &t.hello),
    )
    .await
    {
        // rustls now wraps the counted stream: its flushes still count.
        Ok(()) => Ok((conn, Secured::StartTls, flushes)),
        Err(e @ SendError::Untrusted { .. })
            if loopback && matches!(t.security, Security::Unspecified(_)) =>
        {
            // After a failed handshake lettre's connection has no stream
            // left: start again, and stay in plain text.
            drop(conn);
            let (conn, _, flushes) = connect(t, timeout).await?;
            Ok((conn, Secured::PlainOnLoopback(e.for_host(&t.host)), flushes))
        }
        Err(e) => Err(e),
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
    Ok(ehlo_keywords(conn, target, timeout)
        .await?
        .iter()
        .any(|k| k.eq_ignore_ascii_case("PIPELINING")))
}

/// The lines of a fresh EHLO reply after the greeting line, e.g.
/// `PIPELINING`, `SIZE 10240000`; none when the server refuses a repeated
/// EHLO.
async fn ehlo_keywords(
    conn: &mut AsyncSmtpConnection,
    target: &Target,
    timeout: Duration,
) -> Result<Vec<String>, SendError> {
    let ehlo = conn.command(format!("EHLO {}\r\n", target.hello));
    let reply = match timed(timeout, Stage::Session, ehlo).await {
        Ok(reply) => reply,
        Err(SendError::Refused(refusal)) => {
            tracing::debug!(reply = %refusal, "the server refused a second EHLO; not pipelining");
            return Ok(Vec::new());
        }
        Err(e) => return Err(e),
    };
    Ok(reply.message().skip(1).map(str::to_string).collect())
}

/// How the probe's connection was secured.
#[derive(Debug)]
pub enum ProbedTls {
    /// `smtps://`: TLS from the first byte.
    Implicit,
    /// STARTTLS, offered and done.
    StartTls,
    /// The server offers no STARTTLS (and the URL does not require it).
    NotOffered,
    /// TLS was tried and failed (a certificate that does not verify, or
    /// `tls=required` and no STARTTLS).
    Failed(SendError),
    /// The certificate of a relay on this machine did not verify and the
    /// URL does not ask for TLS: plain text instead (see the error).
    PlainOnLoopback(SendError),
}

/// What `letterpress doctor` learns of the relay in one session, step by
/// step: each step's outcome, and the steps after a failed one left empty.
#[derive(Debug)]
pub struct Probe {
    /// Connected, greeted and answered EHLO (the server's name on success).
    pub connected: Result<String, SendError>,
    /// How the connection was secured (`None` when it never got that far).
    pub tls: Option<ProbedTls>,
    /// The EHLO keywords on the (secured) connection, e.g. `SIZE 10240000`.
    pub keywords: Vec<String>,
    /// The AUTH outcome; `None` when no credentials are configured or the
    /// session ended before.
    pub auth: Option<Result<(), SendError>>,
    /// Whether the server is on a loopback address.
    pub loopback: bool,
}

impl Probe {
    /// Whether an EHLO keyword (e.g. `PIPELINING`) is offered.
    pub fn offers(&self, keyword: &str) -> bool {
        self.keyword(keyword).is_some()
    }

    /// The parameter of an EHLO keyword, e.g. `10240000` of `SIZE
    /// 10240000` (an empty string for a keyword without one).
    pub fn keyword(&self, keyword: &str) -> Option<&str> {
        self.keywords.iter().find_map(|line| {
            let mut words = line.splitn(2, ' ');
            let k = words.next()?;
            k.eq_ignore_ascii_case(keyword)
                .then(|| words.next().unwrap_or("").trim())
        })
    }
}

/// Opens one session to `target` as [`Conn::open`] would and reports each
/// step instead of stopping at the first failure; ends it with QUIT.
pub(super) async fn probe(target: &Target, timeout: Duration) -> Probe {
    let t = target;
    let mut probe = Probe {
        connected: Ok(String::new()),
        tls: None,
        keywords: Vec::new(),
        auth: None,
        loopback: false,
    };
    let conn = match connect(t, timeout).await {
        Ok((conn, loopback, _)) => {
            probe.loopback = loopback;
            conn
        }
        Err(e) => {
            let e = e.for_host(&t.host);
            if matches!(t.security, Security::Wrapper(_))
                && matches!(e, SendError::Untrusted { .. } | SendError::Tls { .. })
            {
                // With implicit TLS the handshake comes before any SMTP.
                probe.connected = Ok(String::new());
                probe.tls = Some(ProbedTls::Failed(e));
            } else {
                probe.connected = Err(e);
            }
            return probe;
        }
    };
    probe.connected = Ok(conn.server_info().name().to_string());
    // A failed handshake leaves lettre's connection without a stream: it is
    // dropped, never asked to QUIT (lettre panics if asked).
    let mut conn = match secure(conn, probe.loopback, None, t, timeout).await {
        Ok((conn, secured, _)) => {
            probe.tls = Some(match secured {
                Secured::Implicit => ProbedTls::Implicit,
                Secured::StartTls => ProbedTls::StartTls,
                Secured::NotOffered => ProbedTls::NotOffered,
                Secured::PlainOnLoopback(why) => ProbedTls::PlainOnLoopback(why),
            });
            conn
        }
        Err(e) => {
            probe.tls = Some(ProbedTls::Failed(e.for_host(&t.host)));
            return probe;
        }
    };
    match ehlo_keywords(&mut conn, target, timeout).await {
        Ok(keywords) => probe.keywords = keywords,
        Err(e) => {
            probe.connected = Err(e);
            return probe;
        }
    }
    if let Some(credentials) = &t.credentials {
        probe.auth = Some(if may_authenticate(conn.is_encrypted(), probe.loopback) {
            timed(
                timeout,
                Stage::Session,
                conn.auth(DEFAULT_MECHANISMS, credentials),
            )
            .await
            .map(|_| ())
        } else {
            Err(SendError::PlainAuth {
                host: t.host.clone(),
            })
        });
    }
    let _ = tokio::time::timeout(timeout, conn.quit()).await;
    probe
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
