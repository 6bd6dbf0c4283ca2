//! The SMTP client: lettre's protocol code over connections this crate
//! opens and pools itself.
//!
//! lettre's own pool is not used because of four costs that dominate a
//! bulk send to a fast relay:
//!
//! - Its sockets keep Nagle's algorithm on, and lettre writes the message
//!   and the closing `CRLF.CRLF` in two writes: the small second write waits
//!   for the ACK of the first, which the server delays (40 ms on Linux).
//!   That capped a connection at about 25 messages a second. Connections
//!   made here set `TCP_NODELAY`.
//! - It sends a `NOOP` before every reuse of a pooled connection, one more
//!   round trip per message. Here a reused connection that turns out to be
//!   dead fails at `MAIL FROM` with no reply, before anything of the
//!   message was sent, and the message goes out on a fresh connection
//!   instead. A reply there (a 421) is an answer, and is obeyed.
//! - It applies its timeout to connecting only; here every command and the
//!   message itself are bounded by `delivery.timeout`, so a stalled server
//!   is a deferral, not a stuck worker.
//!
//! - It sends MAIL, RCPT and DATA one at a time, a round trip each. Where
//!   the server offers PIPELINING (RFC 2920) they go here in one write, and
//!   the last look at the recipient's status runs while DATA's reply
//!   travels and, if it takes longer, while the message is written, only
//!   the final dot waiting for it (see [`SmtpClient::send_gated`]): two
//!   round trips a message instead of four, and the status lookup off
//!   them. lettre does not keep the EHLO keywords it does not know, so
//!   each new connection asks with one more EHLO.
//!
//! TLS: `smtp://host` (or `?tls=opportunistic`) takes STARTTLS whenever
//! the server offers it, `?tls=required` fails without it, `smtps://` is
//! TLS from the first byte; the certificate is verified in every mode,
//! against the public roots and `delivery.tls_ca_file`. Only a URL that
//! says nothing of TLS, to a server on a loopback address, goes on in
//! plain text when the certificate does not verify (a local relay's
//! self-signed default). AUTH never goes
//! over a plain-text connection to a server that is not on a loopback
//! address ([`SendError::PlainAuth`]).
//!
//! Implicit TLS (`smtps://`) connections are opened by lettre (it owns the
//! TLS setup there), so they keep Nagle's algorithm.
//!
//! One module per concept, from the bytes up: `wire` (the message as DATA
//! sends it), `transaction` (one message over one connection: MAIL, RCPT,
//! DATA, the gate), `connection` (one session opened and made ready:
//! TCP, STARTTLS, EHLO, AUTH), `socket` (the TCP stream under it, which
//! tells when lettre has flushed a write), `pool` ([`SmtpClient`]: the idle
//! connections and which one a message uses), `target` (the URL read
//! into where and how to connect), `reply` (what a refusal says) and
//! `error` ([`SendError`]).

mod connection;
mod error;
mod pool;
mod reply;
mod socket;
mod target;
mod transaction;
mod wire;

pub use connection::{Probe, ProbedTls};
pub use error::{Class, SendError};
pub use pool::SmtpClient;
pub use reply::{EnhancedCode, Reply, Stage};
pub use target::{Target, TargetError, TrustedCa};
pub use wire::BareLineEnd;
