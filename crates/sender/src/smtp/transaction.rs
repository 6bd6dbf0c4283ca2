//! One message over one connection: MAIL, RCPT for each recipient, DATA,
//! the gate, and the message, pipelined where the server allows it.

use std::future::{Future, poll_fn};
use std::pin::{Pin, pin};
use std::task::{Context, Poll};
use std::time::Duration;

use lettre::address::Envelope;
use lettre::transport::smtp::client::AsyncSmtpConnection;
use lettre::transport::smtp::commands::{Data, Mail, Rcpt};
use lettre::transport::smtp::extension::{Extension, MailBodyParameter, MailParameter};
use lettre::transport::smtp::response::Response;

use super::connection::{Conn, timed};
use super::error::SendError;
use super::reply::{Reply, Stage};
use super::socket::Flushes;
use super::wire::data_block;

/// How a transaction that did not fail ended.
pub(super) enum Step<T> {
    /// The server accepted the message with this reply.
    Accepted(Response),
    /// The gate said no before the message's final dot went. The
    /// connection is mid-DATA: it is dropped without a QUIT (which the
    /// server would read as text), and its end tells the server the
    /// message was cut short, so it delivers nothing.
    Stopped { why: T },
}

/// MAIL, RCPT for each recipient, DATA, the gate and the message: what
/// lettre's `send` does, with the stage of a failure kept, every step
/// timed, MAIL, RCPT and DATA pipelined where the server allows it, and
/// the gate asked while DATA's reply is on its way. If the gate has not
/// answered by the time DATA's reply is in, the message is written while
/// it answers and only its final dot waits (on connections this client
/// opened itself; not on implicit TLS): on PostgreSQL the gate's round
/// trip was a third of a message's time on the connection, spent with the
/// relay idle (benches/README.md).
///
/// A failure at [`Stage::Mail`] means nothing of this message reached the
/// server (see `pool.rs` for what that allows).
pub(super) async fn run<T, F, Fut>(
    conn: &mut Conn,
    envelope: &Envelope,
    (header, body): (&[u8], &[u8]),
    gate: &F,
) -> Result<Step<T>, SendError>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<(), T>>,
{
    let pipelining = conn.pipelining;
    let timeout = conn.timeout;
    let flushes = conn.flushes.as_ref();
    let conn = &mut conn.inner;
    let mut options = Vec::new();
    let ascii = |a: &lettre::Address| AsRef::<str>::as_ref(a).is_ascii();
    if !envelope.from().is_none_or(ascii) || !envelope.to().iter().all(ascii) {
        if !conn.server_info().supports_feature(Extension::SmtpUtfEight) {
            return Err(SendError::Unsupported(
                "the address is not ASCII and the server does not support SMTPUTF8",
            ));
        }
        options.push(MailParameter::SmtpUtfEight);
    }
    if !(header.is_ascii() && body.is_ascii()) {
        if !conn.server_info().supports_feature(Extension::EightBitMime) {
            return Err(SendError::Unsupported(
                "the message is not ASCII and the server does not support 8BITMIME",
            ));
        }
        options.push(MailParameter::Body(MailBodyParameter::EightBitMime));
    }
    // Made (and checked: CRLF line ends only) before anything is sent, so
    // a message that cannot go leaves the connection as clean as it was.
    let block = data_block(header, body)?;
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
    timed(timeout, Stage::Mail, conn.command(head)).await?;
    for rcpt in &rcpts {
        if pipelining {
            timed(timeout, Stage::Rcpt, conn.read_response()).await?;
        } else {
            timed(timeout, Stage::Rcpt, conn.command(rcpt)).await?;
        }
    }
    // The recipient is accepted. The gate is asked now, while DATA's
    // reply travels (DATA itself went with MAIL when pipelined): any
    // change committed before this point is seen.
    let mut gate = pin!(gate());
    let mut answer = None;
    let data = async {
        if pipelining {
            timed(timeout, Stage::Data, conn.read_response()).await
        } else {
            timed(timeout, Stage::Data, conn.command(Data)).await
        }
    };
    alongside(data, gate.as_mut(), &mut answer).await?;
    // The gate has not answered (a round trip to another process): the
    // message goes now, and only its final dot waits for the answer. If it
    // came first (on a SQLite file it comes at once), or the connection is
    // lettre's own (implicit TLS), the message and its dot go in one write.
    let dot_only = match (&block, flushes) {
        (Some(block), Some(flushes)) if answer.is_none() => {
            all_but_the_dot(conn, block, flushes, timeout, gate.as_mut(), &mut answer).await?;
            true
        }
        _ => false,
    };
    let wanted = match answer {
        Some(wanted) => wanted,
        None => gate.await,
    };
    if let Err(why) = wanted {
        // The server waits for the message (or its end): closing the
        // connection without the final dot is the only way out, and a
        // server never delivers a message cut short (RFC 5321 4.1.1.4). A
        // rare event (an unsubscribe in the last milliseconds), so the
        // cost of a new connection does not matter.
        return Ok(Step::Stopped { why });
    }
    let sent = match block {
        _ if dot_only => timed(timeout, Stage::EndOfData, conn.command(END_OF_DATA)).await,
        Some(block) => timed(timeout, Stage::EndOfData, conn.command(block)).await,
        None => {
            let message = [header, body].concat();
            timed(timeout, Stage::EndOfData, conn.message(&message)).await
        }
    };
    sent.map(Step::Accepted)
}

/// The line that ends the data. The block [`data_block`] makes ends with
/// it, after the message's last CRLF.
const END_OF_DATA: &str = ".\r\n";

/// Polls the gate into `answer`, unless it has answered already.
fn hear<G: Future>(gate: &mut Pin<&mut G>, answer: &mut Option<G::Output>, cx: &mut Context<'_>) {
    if answer.is_none()
        && let Poll::Ready(a) = gate.as_mut().poll(cx)
    {
        *answer = Some(a);
    }
}

/// Drives `step` to its end, and the gate alongside it until the gate
/// answers; an answer that came meanwhile is left in `answer`.
async fn alongside<S: Future, G: Future>(
    step: S,
    mut gate: Pin<&mut G>,
    answer: &mut Option<G::Output>,
) -> S::Output {
    let mut step = pin!(step);
    poll_fn(|cx| {
        hear(&mut gate, answer, cx);
        step.as_mut().poll(cx)
    })
    .await
}

/// Writes `block` up to its final dot, the gate polled meanwhile; returns
/// early, the write cut short, if the gate says no (left in `answer`).
///
/// lettre writes only in `command`, which then waits for a reply that a
/// server gives only after the dot: the command is dropped as soon as its
/// write is flushed, which `flushes` tells (see `socket.rs`). A reply
/// before that is a failure: a refusal, or (from a server that accepts
/// data it has not seen end) a reply that makes no sense there.
async fn all_but_the_dot<T, G>(
    conn: &mut AsyncSmtpConnection,
    block: &str,
    flushes: &Flushes,
    timeout: Duration,
    mut gate: Pin<&mut G>,
    answer: &mut Option<Result<(), T>>,
) -> Result<(), SendError>
where
    G: Future<Output = Result<(), T>>,
{
    let message = &block[..block.len() - END_OF_DATA.len()];
    let before = flushes.now();
    let mut write = pin!(timed(timeout, Stage::EndOfData, conn.command(message)));
    let replied = poll_fn(|cx| {
        hear(&mut gate, answer, cx);
        if matches!(answer, Some(Err(_))) {
            return Poll::Ready(None);
        }
        if let Poll::Ready(replied) = write.as_mut().poll(cx) {
            return Poll::Ready(Some(replied));
        }
        if flushes.now() != before {
            return Poll::Ready(None);
        }
        Poll::Pending
    })
    .await;
    match replied {
        None => Ok(()),
        Some(Err(e)) => Err(e),
        Some(Ok(early)) => Err(SendError::Refused(Reply::new(
            Stage::EndOfData,
            u16::from(early.code()),
            early.message().collect::<Vec<_>>().join(" "),
        ))),
    }
}
