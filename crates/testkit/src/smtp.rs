//! A small real SMTP server for the end-to-end tests, in the test process.
//!
//! It speaks enough ESMTP for lettre (EHLO, AUTH PLAIN, MAIL, RCPT, DATA,
//! RSET, NOOP, QUIT) over real TCP, and lets a test script its answers per recipient:
//! accept, reply with any code at RCPT or after DATA, drop the connection,
//! or stall. Written for the tests rather than taken from a crate because
//! the scripted failures (drop mid-transaction, stall, 421) are the point,
//! and the embeddable servers on crates.io cannot produce them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

/// One message the server accepted (a 250 after DATA).
#[derive(Debug, Clone)]
pub struct Received {
    /// The envelope sender (MAIL FROM), without the angle brackets.
    pub mail_from: String,
    /// The envelope recipients whose RCPT TO was accepted.
    pub rcpt_to: Vec<String>,
    /// The message as sent, dot-stuffing undone.
    pub data: String,
    /// When its transaction began (MAIL FROM was read), on the test
    /// process's monotonic clock.
    pub started: std::time::Instant,
    /// When the server accepted it (just before its 250 after DATA).
    pub at: std::time::Instant,
}

/// What to do with a recipient.
#[derive(Debug, Clone)]
pub enum Behavior {
    /// Accept the recipient and the message.
    Accept,
    /// Reply to RCPT TO with this line, e.g. "550 5.1.1 no such user".
    RcptReply(String),
    /// Accept RCPT, reply to the end of DATA with this line (a `250 …`
    /// line accepts the message: it is counted as received).
    DataReply(String),
    /// Close the connection without a word when RCPT TO arrives.
    Drop,
    /// Never answer RCPT TO (the client's timeout must fire).
    Stall,
    /// Accept, but take this long to answer the end of DATA: a slow relay.
    SlowData(Duration),
}

/// A rule: recipients containing `needle` get `behavior` for their first
/// `times` attempts (None = always), then are accepted.
#[derive(Debug, Clone)]
struct Rule {
    needle: String,
    behavior: Behavior,
    times: Option<u32>,
}

/// A test's hook on RCPT TO, called with the recipient.
type RcptHook = Arc<dyn Fn(&str) + Send + Sync>;

#[derive(Default)]
struct State {
    received: Vec<Received>,
    rules: Vec<Rule>,
    attempts: HashMap<String, u32>,
    /// Called with the recipient before the RCPT reply, while the client waits.
    on_rcpt: Option<RcptHook>,
    /// When set, the reply to DATA is withheld once this many messages are in.
    hold_data_after: Option<usize>,
    held: usize,
    /// Messages whose end of DATA was let through without holding (they
    /// are accepted, or are about to be).
    admitted: usize,
    /// Leave PIPELINING out of the EHLO reply (a relay without RFC 2920).
    no_pipelining: bool,
    /// MAIL FROM commands that arrived with the next command already
    /// behind them in the same read (the client pipelined).
    pipelined: usize,
    /// Refuse every EHLO after a session's first (a relay that does not
    /// allow a repeated one, as RFC 5321 says it should).
    one_ehlo_only: bool,
    /// Connections opened, and those the client closed with QUIT.
    sessions: usize,
    quits: usize,
    /// Leave 8BITMIME and SMTPUTF8 out of the EHLO reply (a 7-bit relay).
    seven_bit_only: bool,
    /// The reply to MAIL FROM in a connection's second or later
    /// transaction, and how many more times to give it.
    reused_mail_reply: Option<(String, u32)>,
    /// How many times that reply was given.
    reused_mail_replies: usize,
    /// Offer AUTH PLAIN and accept only this user and password.
    auth: Option<(String, String)>,
    /// AUTH commands answered 235 (accepted).
    auths_accepted: usize,
    /// The SIZE limit EHLO advertises (default 10 MiB).
    size: Option<u64>,
    /// Bytes of message data received (as sent, dot-stuffed) in DATA
    /// phases whose end has not come yet.
    unended_data: usize,
    /// DATA phases that ended with the connection, before the final dot.
    cut_short: usize,
}

/// A running server; dropped with the test's runtime.
#[derive(Clone)]
pub struct SmtpServer {
    /// The loopback port it listens on.
    pub port: u16,
    state: Arc<Mutex<State>>,
    changed: Arc<Notify>,
    /// Wakes the sessions whose DATA reply is withheld ([`Self::release_held`]).
    release: Arc<Notify>,
}

impl SmtpServer {
    /// Listens on a free loopback port and serves every connection on
    /// the current runtime.
    pub async fn start() -> SmtpServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().unwrap().port();
        let server = SmtpServer {
            port,
            state: Arc::new(Mutex::new(State::default())),
            changed: Arc::new(Notify::new()),
            release: Arc::new(Notify::new()),
        };
        let s = server.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let s = s.clone();
                tokio::spawn(async move {
                    let _ = s.session(stream).await;
                });
            }
        });
        server
    }

    /// [`SmtpServer::start`] on a runtime of its own thread, so that the
    /// instants it records ([`Received::started`], [`Received::at`]) are
    /// not late for want of a turn on a busy test runtime. It serves until
    /// the test process ends.
    pub fn start_on_its_own_thread() -> SmtpServer {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("SMTP runtime");
            runtime.block_on(async move {
                let _ = tx.send(SmtpServer::start().await);
                std::future::pending::<()>().await;
            });
        });
        rx.recv().expect("SMTP server started")
    }

    /// Recipients containing `needle` get `behavior` (on their first `times` attempts).
    pub fn rule(&self, needle: &str, behavior: Behavior, times: Option<u32>) {
        self.state.lock().unwrap().rules.push(Rule {
            needle: needle.to_string(),
            behavior,
            times,
        });
    }

    /// Calls `f` with each recipient when its RCPT TO arrives, on a
    /// blocking thread, before the reply: the client waits while it runs.
    pub fn on_rcpt(&self, f: impl Fn(&str) + Send + Sync + 'static) {
        self.state.lock().unwrap().on_rcpt = Some(Arc::new(f));
    }

    /// From now on, EHLO does not offer PIPELINING: clients must wait for
    /// each reply before the next command.
    pub fn without_pipelining(&self) {
        self.state.lock().unwrap().no_pipelining = true;
    }

    /// From now on, EHLO offers neither 8BITMIME nor SMTPUTF8: a relay
    /// that takes only 7-bit messages and ASCII addresses.
    pub fn without_8bitmime_and_smtputf8(&self) {
        self.state.lock().unwrap().seven_bit_only = true;
    }

    /// The next `times` MAIL FROM commands that come on a connection that
    /// already carried a transaction (a client's pooled connection) are
    /// answered with `reply`, e.g. "421 4.7.0 too many messages"; after a
    /// 421 the relay closes the connection, as RFC 5321 3.8 says.
    pub fn reply_to_mail_on_a_reused_connection(&self, reply: &str, times: u32) {
        self.state.lock().unwrap().reused_mail_reply = Some((reply.to_string(), times));
    }

    /// How many times the reply of
    /// [`SmtpServer::reply_to_mail_on_a_reused_connection`] was given.
    pub fn reused_mail_replies(&self) -> usize {
        self.state.lock().unwrap().reused_mail_replies
    }

    /// From now on, EHLO offers `AUTH PLAIN`, and AUTH succeeds only with
    /// this user and password (535 otherwise).
    pub fn require_auth(&self, user: &str, password: &str) {
        self.state.lock().unwrap().auth = Some((user.to_string(), password.to_string()));
    }

    /// AUTH commands the server accepted so far.
    pub fn auths_accepted(&self) -> usize {
        self.state.lock().unwrap().auths_accepted
    }

    /// From now on, EHLO advertises `SIZE limit` (a relay that takes only
    /// small messages).
    pub fn with_size_limit(&self, limit: u64) {
        self.state.lock().unwrap().size = Some(limit);
    }

    /// From now on, a session's second EHLO is refused with 503.
    pub fn refuse_repeated_ehlo(&self) {
        self.state.lock().unwrap().one_ehlo_only = true;
    }

    /// Withholds the DATA reply of every message after the first `n`.
    pub fn hold_data_after(&self, n: usize) {
        self.state.lock().unwrap().hold_data_after = Some(n);
    }

    /// Stops withholding: every held session accepts its message (records
    /// it and answers 250, which a killed client never reads, like a relay
    /// that took a message whose sender died before the reply), and later
    /// messages are answered at once.
    pub fn release_held(&self) {
        self.state.lock().unwrap().hold_data_after = None;
        self.release.notify_waiters();
    }

    /// Connections opened so far and how many of them the client ended
    /// with QUIT, as a polite client ends every one.
    pub fn sessions_and_quits(&self) -> (usize, usize) {
        let st = self.state.lock().unwrap();
        (st.sessions, st.quits)
    }

    /// Messages whose DATA reply is being withheld right now.
    pub fn held(&self) -> usize {
        self.state.lock().unwrap().held
    }

    /// Bytes of message data (as sent, dot-stuffed) that have arrived in
    /// DATA phases still waiting for their final dot.
    pub fn unended_data(&self) -> usize {
        self.state.lock().unwrap().unended_data
    }

    /// DATA phases the client ended by closing the connection before the
    /// final dot: messages cut short, which are not delivered.
    pub fn cut_short(&self) -> usize {
        self.state.lock().unwrap().cut_short
    }

    /// Every message accepted so far, in order.
    pub fn received(&self) -> Vec<Received> {
        self.state.lock().unwrap().received.clone()
    }

    /// Transactions whose MAIL FROM came pipelined with what follows it.
    pub fn pipelined(&self) -> usize {
        self.state.lock().unwrap().pipelined
    }

    /// Attempts (RCPT TO commands) seen per recipient.
    pub fn attempts(&self, rcpt: &str) -> u32 {
        self.state
            .lock()
            .unwrap()
            .attempts
            .get(rcpt)
            .copied()
            .unwrap_or(0)
    }

    /// Copies accepted per recipient.
    pub fn copies(&self) -> HashMap<String, usize> {
        let mut m = HashMap::new();
        for r in self.received() {
            for to in r.rcpt_to {
                *m.entry(to).or_insert(0) += 1;
            }
        }
        m
    }

    /// Waits (event-driven, bounded) until `cond` holds for the server state.
    pub async fn wait_until(&self, what: &str, cond: impl Fn(&SmtpServer) -> bool) {
        let deadline = tokio::time::Instant::now() + crate::WAIT;
        loop {
            let notified = self.changed.notified();
            if cond(self) {
                return;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                panic!("timed out waiting for: {what}");
            }
        }
    }

    fn behavior_for(&self, rcpt: &str) -> Behavior {
        let mut st = self.state.lock().unwrap();
        let n = {
            let a = st.attempts.entry(rcpt.to_string()).or_insert(0);
            *a += 1;
            *a
        };
        for rule in &st.rules {
            if rcpt.contains(&rule.needle) && rule.times.is_none_or(|t| n <= t) {
                return rule.behavior.clone();
            }
        }
        Behavior::Accept
    }

    async fn session(&self, stream: TcpStream) -> std::io::Result<()> {
        self.state.lock().unwrap().sessions += 1;
        let (read, mut write) = stream.into_split();
        let mut lines = BufReader::new(read);
        write
            .write_all(b"220 test.local ESMTP letterpress-test\r\n")
            .await?;
        let mut mail_from = String::new();
        let mut started = std::time::Instant::now();
        let mut rcpt_to: Vec<String> = Vec::new();
        let mut data_reply: Option<String> = None;
        let mut data_delay: Option<Duration> = None;
        let mut line = String::new();
        let mut ehlos = 0;
        // MAIL FROM commands seen on this connection.
        let mut transactions = 0;
        loop {
            line.clear();
            if lines.read_line(&mut line).await? == 0 {
                return Ok(());
            }
            let cmd = line.trim_end().to_string();
            let upper = cmd.to_ascii_uppercase();
            if upper.starts_with("EHLO") && ehlos > 0 && self.state.lock().unwrap().one_ehlo_only {
                write
                    .write_all(b"503 5.5.1 Error: duplicate EHLO\r\n")
                    .await?;
            } else if upper.starts_with("EHLO") {
                ehlos += 1;
                // Commands are read line by line, so pipelined ones (RFC
                // 2920) are simply answered in turn.
                let (no_pipelining, seven_bit_only, auth, size) = {
                    let st = self.state.lock().unwrap();
                    (
                        st.no_pipelining,
                        st.seven_bit_only,
                        st.auth.is_some(),
                        st.size.unwrap_or(10_485_760),
                    )
                };
                let auth = if auth { "250-AUTH PLAIN\r\n" } else { "" };
                let pipelining = if no_pipelining {
                    ""
                } else {
                    "250-PIPELINING\r\n"
                };
                let eight_bit = if seven_bit_only {
                    ""
                } else {
                    "250-8BITMIME\r\n250-SMTPUTF8\r\n"
                };
                write
                    .write_all(
                        format!(
                            "250-test.local\r\n{pipelining}{eight_bit}{auth}250 SIZE {size}\r\n"
                        )
                        .as_bytes(),
                    )
                    .await?;
            } else if upper.starts_with("AUTH PLAIN") {
                let expected = self.state.lock().unwrap().auth.clone();
                let given = cmd
                    .split_whitespace()
                    .nth(2)
                    .and_then(|b64| {
                        use base64::Engine as _;
                        base64::engine::general_purpose::STANDARD.decode(b64).ok()
                    })
                    .map(|raw| String::from_utf8_lossy(&raw).into_owned());
                let ok = match (expected, given) {
                    (Some((user, password)), Some(given)) => {
                        given == format!("\0{user}\0{password}")
                    }
                    _ => false,
                };
                if ok {
                    self.state.lock().unwrap().auths_accepted += 1;
                    write
                        .write_all(b"235 2.7.0 Authentication successful\r\n")
                        .await?;
                } else {
                    write
                        .write_all(b"535 5.7.8 Authentication credentials invalid\r\n")
                        .await?;
                }
            } else if upper.starts_with("HELO") {
                write.write_all(b"250 test.local\r\n").await?;
            } else if upper.starts_with("MAIL FROM:") {
                started = std::time::Instant::now();
                transactions += 1;
                if !lines.buffer().is_empty() {
                    self.state.lock().unwrap().pipelined += 1;
                }
                let scripted = {
                    let mut st = self.state.lock().unwrap();
                    match &mut st.reused_mail_reply {
                        Some((reply, times)) if transactions > 1 && *times > 0 => {
                            *times -= 1;
                            let reply = reply.clone();
                            st.reused_mail_replies += 1;
                            Some(reply)
                        }
                        _ => None,
                    }
                };
                if let Some(reply) = scripted {
                    write.write_all(format!("{reply}\r\n").as_bytes()).await?;
                    self.changed.notify_waiters();
                    if reply.starts_with("421") {
                        // Closing with the pipelined RCPT and DATA unread
                        // would reset the connection, and the client could
                        // lose the 421 with it: end our side, then read
                        // what the client still sends until it closes.
                        write.shutdown().await?;
                        let mut rest = Vec::new();
                        let _ = lines.read_to_end(&mut rest).await;
                        return Ok(());
                    }
                    continue;
                }
                mail_from = addr(&cmd[10..]);
                rcpt_to.clear();
                data_reply = None;
                data_delay = None;
                write.write_all(b"250 2.1.0 Ok\r\n").await?;
            } else if upper.starts_with("RCPT TO:") {
                let rcpt = addr(&cmd[8..]);
                let hook = self.state.lock().unwrap().on_rcpt.clone();
                if let Some(hook) = hook {
                    let r = rcpt.clone();
                    tokio::task::spawn_blocking(move || hook(&r)).await.unwrap();
                }
                match self.behavior_for(&rcpt) {
                    Behavior::Accept => {
                        rcpt_to.push(rcpt);
                        write.write_all(b"250 2.1.5 Ok\r\n").await?;
                    }
                    Behavior::RcptReply(reply) => {
                        write.write_all(format!("{reply}\r\n").as_bytes()).await?;
                    }
                    Behavior::DataReply(reply) => {
                        rcpt_to.push(rcpt);
                        data_reply = Some(reply);
                        write.write_all(b"250 2.1.5 Ok\r\n").await?;
                    }
                    Behavior::SlowData(delay) => {
                        rcpt_to.push(rcpt);
                        data_delay = Some(delay);
                        write.write_all(b"250 2.1.5 Ok\r\n").await?;
                    }
                    Behavior::Drop => return Ok(()),
                    Behavior::Stall => {
                        std::future::pending::<()>().await;
                    }
                }
                self.changed.notify_waiters();
            } else if upper == "DATA" {
                if rcpt_to.is_empty() {
                    // What postfix says to a pipelined DATA after refused RCPTs.
                    write
                        .write_all(b"554 5.5.1 Error: no valid recipients\r\n")
                        .await?;
                    continue;
                }
                write
                    .write_all(b"354 End data with <CR><LF>.<CR><LF>\r\n")
                    .await?;
                let mut data = String::new();
                let mut wire_bytes = 0;
                loop {
                    line.clear();
                    // A reset ends the connection as a close does.
                    let n = lines.read_line(&mut line).await.unwrap_or(0);
                    let ended = n == 0 || line == ".\r\n" || line == ".\n";
                    {
                        let mut st = self.state.lock().unwrap();
                        if ended {
                            st.unended_data -= wire_bytes;
                            st.cut_short += usize::from(n == 0);
                        } else {
                            st.unended_data += n;
                            wire_bytes += n;
                        }
                    }
                    self.changed.notify_waiters();
                    if n == 0 {
                        return Ok(());
                    }
                    if ended {
                        break;
                    }
                    let l = line.strip_prefix('.').unwrap_or(&line);
                    data.push_str(l);
                }
                if let Some(reply) = data_reply.take() {
                    // A 250 of the test's own (e.g. naming a queue id)
                    // accepts the message like the default one.
                    if reply.starts_with("250") {
                        self.state.lock().unwrap().received.push(Received {
                            mail_from: mail_from.clone(),
                            rcpt_to: std::mem::take(&mut rcpt_to),
                            data,
                            started,
                            at: std::time::Instant::now(),
                        });
                        self.changed.notify_waiters();
                    }
                    write.write_all(format!("{reply}\r\n").as_bytes()).await?;
                    continue;
                }
                if let Some(delay) = data_delay.take() {
                    // The scripted slowness of the relay, not a wait for
                    // anything: the client sees a slow server.
                    tokio::time::sleep(delay).await;
                }
                // Decided and counted under one lock: sessions ending DATA
                // at the same moment must not all see the last free place
                // (checking `received`, pushed only later, let two through).
                let hold = {
                    let mut st = self.state.lock().unwrap();
                    match st.hold_data_after {
                        Some(n) if st.admitted >= n => {
                            st.held += 1;
                            true
                        }
                        _ => {
                            st.admitted += 1;
                            false
                        }
                    }
                };
                if hold {
                    self.changed.notify_waiters();
                    // The message is not accepted until we answer, which we
                    // do only once released: the client is in flight until
                    // then (or until it dies).
                    loop {
                        let released = self.release.notified();
                        if self.state.lock().unwrap().hold_data_after.is_none() {
                            break;
                        }
                        released.await;
                    }
                    self.state.lock().unwrap().held -= 1;
                }
                self.state.lock().unwrap().received.push(Received {
                    mail_from: mail_from.clone(),
                    rcpt_to: std::mem::take(&mut rcpt_to),
                    data,
                    started,
                    at: std::time::Instant::now(),
                });
                write.write_all(b"250 2.0.0 Ok: queued\r\n").await?;
                self.changed.notify_waiters();
            } else if upper == "RSET" {
                rcpt_to.clear();
                data_reply = None;
                data_delay = None;
                write.write_all(b"250 2.0.0 Ok\r\n").await?;
            } else if upper == "NOOP" {
                write.write_all(b"250 2.0.0 Ok\r\n").await?;
            } else if upper == "QUIT" {
                self.state.lock().unwrap().quits += 1;
                write.write_all(b"221 2.0.0 Bye\r\n").await?;
                return Ok(());
            } else {
                write
                    .write_all(b"502 5.5.2 Command not recognized\r\n")
                    .await?;
            }
        }
    }
}

fn addr(s: &str) -> String {
    let s = s.trim();
    let s = s.split_whitespace().next().unwrap_or(s);
    s.trim_start_matches('<').trim_end_matches('>').to_string()
}
