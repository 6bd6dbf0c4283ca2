//! The SMTP client: lettre's protocol code over connections this crate
//! opens and pools itself.
//!
//! lettre's own pool is not used because of three costs that dominate a
//! bulk send to a fast relay:
//!
//! - Its sockets keep Nagle's algorithm on, and lettre writes the message
//!   and the closing `CRLF.CRLF` in two writes: the small second write waits
//!   for the ACK of the first, which the server delays (40 ms on Linux).
//!   That capped a connection at about 25 messages a second. Connections
//!   made here set `TCP_NODELAY`.
//! - It sends a `NOOP` before every reuse of a pooled connection, one more
//!   round trip per message. Here a reused connection that turns out to be
//!   dead fails at `MAIL FROM`, before anything of the message was sent, and
//!   the message goes out on a fresh connection instead.
//! - It applies its timeout to connecting only; here every command and the
//!   message itself are bounded by `delivery.timeout`, so a stalled server
//!   is a deferral, not a stuck worker.
//!
//! - It sends MAIL, RCPT and DATA one at a time, a round trip each. Where
//!   the server offers PIPELINING (RFC 2920) they go here in one write, and
//!   the last look at the recipient's status runs while DATA's reply
//!   travels (see [`SmtpClient::send_gated`]): two round trips a message
//!   instead of four. lettre does not keep the EHLO keywords it does not
//!   know, so each new connection asks with one more EHLO.
//!
//! Implicit TLS (`smtps://`) connections are opened by lettre (it owns the
//! TLS setup there), so they keep Nagle's algorithm.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use lettre::address::Envelope;
use lettre::transport::smtp::Error as SmtpError;
use lettre::transport::smtp::authentication::{Credentials, DEFAULT_MECHANISMS};
use lettre::transport::smtp::client::{AsyncSmtpConnection, TlsParameters};
use lettre::transport::smtp::commands::{Data, Mail, Rcpt};
use lettre::transport::smtp::extension::{ClientId, Extension, MailBodyParameter, MailParameter};
use lettre::transport::smtp::response::Response;

/// How the connection is secured (`delivery.smtp_url`).
#[derive(Clone)]
pub enum Security {
    /// `smtp://host`: plain text.
    Plain,
    /// `smtp://host?tls=opportunistic`: STARTTLS when offered.
    Opportunistic(TlsParameters),
    /// `smtp://host?tls=required`: STARTTLS or fail.
    Required(TlsParameters),
    /// `smtps://host`: TLS from the first byte.
    Wrapper(TlsParameters),
}

/// Where and how to connect, parsed from `delivery.smtp_url` the way
/// lettre's `from_url` reads it.
pub struct Target {
    pub host: String,
    pub port: u16,
    pub security: Security,
    pub hello: ClientId,
    pub credentials: Option<Credentials>,
}

impl Target {
    /// Reads `url` (already accepted by lettre's `from_url`, so only the
    /// forms it knows arrive here); `password` overrides the URL's.
    pub fn from_url(url: &str, password: Option<&str>) -> Result<Self, String> {
        let parsed = url::Url::parse(url).map_err(|e| e.to_string())?;
        let host = parsed
            .host_str()
            .ok_or("no host")?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let tls = parsed
            .query_pairs()
            .find(|(k, _)| k == "tls")
            .map(|(_, v)| v.into_owned());
        let params = || TlsParameters::new(host.clone()).map_err(|e| e.to_string());
        let (security, default_port) = match (parsed.scheme(), tls.as_deref()) {
            ("smtp", None) => (Security::Plain, 25),
            ("smtp", Some("required")) => (Security::Required(params()?), 587),
            ("smtp", Some("opportunistic")) => (Security::Opportunistic(params()?), 587),
            ("smtps", _) => (Security::Wrapper(params()?), 465),
            (scheme, tls) => return Err(format!("unknown scheme {scheme:?} or tls={tls:?}")),
        };
        let hello = match parsed.path().trim_matches('/') {
            "" => ClientId::default(),
            name => ClientId::Domain(name.to_string()),
        };
        let user = percent_decode(parsed.username());
        let password = password
            .map(str::to_string)
            .or_else(|| parsed.password().map(percent_decode));
        let credentials = match (user.is_empty(), password) {
            (false, Some(p)) => Some(Credentials::new(user, p)),
            _ => None,
        };
        Ok(Self {
            port: parsed.port().unwrap_or(default_port),
            host,
            security,
            hello,
            credentials,
        })
    }
}

fn percent_decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={}", s.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

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

/// A connection and what this client learnt about its server.
struct Conn {
    inner: AsyncSmtpConnection,
    /// The server offers PIPELINING: MAIL, RCPT and DATA may go in one write.
    pipelining: bool,
}

struct Idle {
    conn: Conn,
    since: Instant,
}

/// A pool of SMTP connections to one relay (see the module documentation).
pub struct SmtpClient {
    target: Target,
    timeout: Duration,
    max_idle: usize,
    idle: Mutex<Vec<Idle>>,
}

/// Connections unused for longer than this are closed rather than reused:
/// relays drop idle clients after a few minutes anyway.
const MAX_IDLE_TIME: Duration = Duration::from_secs(60);

impl SmtpClient {
    /// A client keeping at most `max_idle` connections open between messages.
    pub fn new(target: Target, timeout: Duration, max_idle: usize) -> Self {
        Self {
            target,
            timeout,
            max_idle: max_idle.max(1),
            idle: Mutex::new(Vec::new()),
        }
    }

    /// Sends `message` (headers and body, CRLF line ends) to the envelope's
    /// recipients and returns the server's reply to the end of data.
    pub async fn send(&self, envelope: &Envelope, message: &[u8]) -> Result<Response, SendError> {
        let go = || async { Ok::<(), Infallible>(()) };
        match self.send_gated(envelope, message, go).await {
            Ok(sent) => sent,
            Err(never) => match never {},
        }
    }

    /// [`SmtpClient::send`], asking `gate` once the recipients are accepted
    /// and before the message goes: `Err(why)` abandons the transaction
    /// (the connection is dropped without the message) and is returned as
    /// the outer `Err`. A check made here cannot be overtaken by a change
    /// committed before the recipient was accepted, which a check made
    /// before sending can. It runs while DATA's reply travels.
    pub async fn send_gated<T, F, Fut>(
        &self,
        envelope: &Envelope,
        message: &[u8],
        gate: F,
    ) -> Result<Result<Response, SendError>, T>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<(), T>>,
    {
        if let Some(mut conn) = self.take_idle() {
            match self.transaction(&mut conn, envelope, message, &gate).await {
                Ok(Step::Accepted(reply)) => {
                    self.park(conn);
                    return Ok(Ok(reply));
                }
                Ok(Step::Stopped { why }) => {
                    drop(conn); // see Step::Stopped
                    return Err(why);
                }
                // Refused at MAIL FROM on a connection that sat in the pool:
                // most likely the server closed it meanwhile. Nothing of
                // the message was sent, so a fresh connection may try it.
                Err(Failure::AtMail(e)) if !e.is_permanent() => {
                    tracing::debug!(error = %e, "pooled connection unusable; reconnecting");
                    close(conn.inner).await;
                }
                Err(f) => return Ok(Err(self.discard(conn, f).await)),
            }
        }
        let mut conn = match self.connect().await {
            Ok(c) => c,
            Err(e) => return Ok(Err(e)),
        };
        match self.transaction(&mut conn, envelope, message, &gate).await {
            Ok(Step::Accepted(reply)) => {
                self.park(conn);
                Ok(Ok(reply))
            }
            Ok(Step::Stopped { why }) => {
                drop(conn); // see Step::Stopped
                Err(why)
            }
            Err(f) => Ok(Err(self.discard(conn, f).await)),
        }
    }

    /// Closes the pooled connections politely (QUIT).
    pub async fn shutdown(&self) {
        let idle = std::mem::take(&mut *self.idle.lock().unwrap_or_else(|e| e.into_inner()));
        for i in idle {
            close(i.conn.inner).await;
        }
    }

    fn take_idle(&self) -> Option<Conn> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        // Newest last: the most recently used connection is the likeliest alive.
        while let Some(i) = idle.pop() {
            if i.since.elapsed() < MAX_IDLE_TIME && !i.conn.inner.has_broken() {
                return Some(i.conn);
            }
            // Too old: dropping it closes the socket without a QUIT, which
            // a relay that has timed us out will not read anyway.
        }
        None
    }

    fn park(&self, conn: Conn) {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < self.max_idle && !conn.inner.has_broken() {
            idle.push(Idle {
                conn,
                since: Instant::now(),
            });
        }
    }

    /// After a failed transaction the connection is closed, as lettre does:
    /// the server's state mid-transaction is unknown.
    async fn discard(&self, conn: Conn, failure: Failure) -> SendError {
        close(conn.inner).await;
        match failure {
            Failure::AtMail(e) => SendError::Smtp(e),
            Failure::Later(e) => e,
        }
    }

    async fn connect(&self) -> Result<Conn, SendError> {
        let t = &self.target;
        let mut conn = match &t.security {
            Security::Wrapper(params) => {
                self.timed(AsyncSmtpConnection::connect_tokio1(
                    (t.host.as_str(), t.port),
                    Some(self.timeout),
                    &t.hello,
                    Some(params.clone()),
                    None,
                ))
                .await?
            }
            _ => {
                let tcp = match tokio::time::timeout(
                    self.timeout,
                    tokio::net::TcpStream::connect((t.host.as_str(), t.port)),
                )
                .await
                {
                    Ok(Ok(tcp)) => tcp,
                    Ok(Err(e)) => return Err(SendError::Connect(e)),
                    Err(_) => return Err(SendError::Timeout(self.timeout)),
                };
                // See the module documentation: without this, every message
                // waits for a delayed ACK before its final dot goes out.
                let _ = tcp.set_nodelay(true);
                self.timed(AsyncSmtpConnection::connect_with_transport(
                    Box::new(tcp),
                    &t.hello,
                ))
                .await?
            }
        };
        match &t.security {
            Security::Opportunistic(params) if conn.can_starttls() => {
                self.timed(conn.starttls(params.clone(), &t.hello)).await?;
            }
            Security::Required(params) => {
                self.timed(conn.starttls(params.clone(), &t.hello)).await?;
            }
            _ => {}
        }
        // Before AUTH: a new EHLO after it would, on some servers, forget it.
        let pipelining = self.offers_pipelining(&mut conn).await?;
        if let Some(credentials) = &t.credentials {
            self.timed(conn.auth(DEFAULT_MECHANISMS, credentials))
                .await?;
        }
        Ok(Conn {
            inner: conn,
            pipelining,
        })
    }

    /// Asks the server's EHLO keywords again and looks for PIPELINING
    /// (lettre's `ServerInfo` drops the keywords it does not use). A
    /// repeated EHLO is allowed at any time outside a transaction (RFC 5321
    /// 4.1.4); a server that refuses it anyway is simply not pipelined to.
    async fn offers_pipelining(&self, conn: &mut AsyncSmtpConnection) -> Result<bool, SendError> {
        let reply = match self
            .timed(conn.command(format!("EHLO {}\r\n", self.target.hello)))
            .await
        {
            Ok(reply) => reply,
            Err(SendError::Smtp(e)) if e.status().is_some() => {
                tracing::debug!(error = %e, "the server refused a second EHLO; not pipelining");
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

    /// MAIL, RCPT for each recipient, DATA, the gate and the message: what
    /// lettre's `send` does, with the stage of a failure kept, every step
    /// timed, MAIL, RCPT and DATA pipelined where the server allows it, and
    /// the gate asked while DATA's reply is on its way.
    async fn transaction<T, F, Fut>(
        &self,
        conn: &mut Conn,
        envelope: &Envelope,
        message: &[u8],
        gate: &F,
    ) -> Result<Step<T>, Failure>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<(), T>>,
    {
        let pipelining = conn.pipelining;
        let conn = &mut conn.inner;
        let mut options = Vec::new();
        let ascii = |a: &lettre::Address| AsRef::<str>::as_ref(a).is_ascii();
        if !envelope.from().is_none_or(ascii) || !envelope.to().iter().all(ascii) {
            if !conn.server_info().supports_feature(Extension::SmtpUtfEight) {
                return Err(Failure::Later(SendError::Unsupported(
                    "the address is not ASCII and the server does not support SMTPUTF8",
                )));
            }
            options.push(MailParameter::SmtpUtfEight);
        }
        if !message.is_ascii() {
            if !conn.server_info().supports_feature(Extension::EightBitMime) {
                return Err(Failure::Later(SendError::Unsupported(
                    "the message is not ASCII and the server does not support 8BITMIME",
                )));
            }
            options.push(MailParameter::Body(MailBodyParameter::EightBitMime));
        }
        let rcpts: Vec<String> = envelope
            .to()
            .iter()
            .map(|to| Rcpt::new(to.clone(), Vec::new()).to_string())
            .collect();
        // Pipelined, RCPT and DATA follow MAIL in the same write and only
        // their replies are read below. Any failure closes the connection,
        // so replies left unread never confuse a later transaction.
        let mut head = Mail::new(envelope.from().cloned(), options).to_string();
        if pipelining {
            head.extend(rcpts.iter().map(String::as_str));
            head.push_str("DATA\r\n");
        }
        match self.timed(conn.command(head)).await {
            Ok(_) => {}
            Err(SendError::Smtp(e)) => return Err(Failure::AtMail(e)),
            Err(e) => return Err(Failure::Later(e)),
        }
        for rcpt in &rcpts {
            let accepted = if pipelining {
                self.timed(conn.read_response()).await
            } else {
                self.timed(conn.command(rcpt)).await
            };
            accepted.map_err(Failure::Later)?;
        }
        // The recipient is accepted. The gate is asked now, while DATA's
        // reply travels (DATA itself went with MAIL when pipelined): any
        // change committed before this point is seen.
        let data = async {
            if pipelining {
                self.timed(conn.read_response()).await
            } else {
                self.timed(conn.command(Data)).await
            }
        };
        let (ready, wanted) = tokio::join!(data, gate());
        ready.map_err(Failure::Later)?;
        if let Err(why) = wanted {
            // The server waits for the message: closing the connection
            // without the final dot is the only way out, and a server never
            // delivers a message cut short (RFC 5321 4.1.1.4). A rare event
            // (an unsubscribe in the last milliseconds), so the cost of a
            // new connection does not matter.
            return Ok(Step::Stopped { why });
        }
        let sent = match data_block(message) {
            Some(block) => self.timed(conn.command(block)).await,
            None => self.timed(conn.message(message)).await,
        };
        sent.map(Step::Accepted).map_err(Failure::Later)
    }

    async fn timed<T>(
        &self,
        step: impl Future<Output = Result<T, SmtpError>>,
    ) -> Result<T, SendError> {
        match tokio::time::timeout(self.timeout, step).await {
            Ok(result) => result.map_err(SendError::Smtp),
            Err(_) => Err(SendError::Timeout(self.timeout)),
        }
    }
}

/// How a transaction that did not fail ended.
enum Step<T> {
    /// The server accepted the message with this reply.
    Accepted(Response),
    /// The gate said no before the message went. The connection is
    /// mid-DATA: it is dropped without a QUIT (which the server would read
    /// as text), and its end tells the server the message was cut short,
    /// so it delivers nothing.
    Stopped { why: T },
}

/// The message as the DATA phase sends it: dot-stuffed (a `.` starting a
/// line is doubled, RFC 5321 4.5.2) and closed by `CRLF.CRLF`, written in
/// one piece.
///
/// lettre's `message` does the same stuffing one byte at a time (the
/// largest single cost of a send once the bodies were pre-encoded), so the
/// block is made here with a substring search and handed to `command`,
/// which writes it and reads the reply to the end of data. `None` for a
/// message that is not UTF-8 (it then goes through lettre's `message`).
///
/// A `String`, not a wrapper type: `command` writes `to_string()` of what
/// it is given, which for a `String` is one exact-size copy, where any
/// other `Display` grows a buffer from empty (a dozen reallocations for a
/// 35 KB message).
fn data_block(message: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(message).ok()?;
    let mut block = String::with_capacity(text.len() + 64);
    // The codec lettre would use doubles a dot at the very start and after
    // every CRLF; nothing else.
    if text.starts_with('.') {
        block.push('.');
    }
    // memchr's vectorised search: `str::find` with a three-byte pattern
    // was a visible share of a message's CPU.
    let mut copied = 0;
    for at in memchr::memmem::find_iter(text.as_bytes(), b"\r\n.") {
        // `at` and `at + 3` fall on ASCII bytes, so on char boundaries.
        block.push_str(&text[copied..at + 3]);
        block.push('.');
        copied = at + 3;
    }
    block.push_str(&text[copied..]);
    block.push_str("\r\n.\r\n");
    Some(block)
}

enum Failure {
    /// MAIL FROM failed: nothing of this message reached the server.
    AtMail(SmtpError),
    /// Anything later, or not a server reply.
    Later(SendError),
}

async fn close(mut conn: AsyncSmtpConnection) {
    // A bounded, best-effort QUIT: the server may already be gone.
    let _ = tokio::time::timeout(Duration::from_secs(1), conn.abort()).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_block_stuffs_dots_at_line_starts_only() {
        let block = data_block(b".a\r\n.b\r\nc.d\r\n..e\n.f").expect("UTF-8");
        assert_eq!(block, "..a\r\n..b\r\nc.d\r\n...e\n.f\r\n.\r\n");
        assert!(data_block(&[0xff, b'a']).is_none());
    }
}
