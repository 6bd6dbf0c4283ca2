//! One message over one connection: MAIL, RCPT for each recipient, DATA,
//! the gate, and the message, pipelined where the server allows it.

use std::future::Future;

use lettre::address::Envelope;
use lettre::transport::smtp::commands::{Data, Mail, Rcpt};
use lettre::transport::smtp::extension::{Extension, MailBodyParameter, MailParameter};
use lettre::transport::smtp::response::Response;

use super::connection::{Conn, timed};
use super::error::SendError;
use super::reply::Stage;
use super::wire::data_block;

/// How a transaction that did not fail ended.
pub(super) enum Step<T> {
    /// The server accepted the message with this reply.
    Accepted(Response),
    /// The gate said no before the message went. The connection is
    /// mid-DATA: it is dropped without a QUIT (which the server would read
    /// as text), and its end tells the server the message was cut short,
    /// so it delivers nothing.
    Stopped { why: T },
}

/// MAIL, RCPT for each recipient, DATA, the gate and the message: what
/// lettre's `send` does, with the stage of a failure kept, every step
/// timed, MAIL, RCPT and DATA pipelined where the server allows it, and
/// the gate asked while DATA's reply is on its way.
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
    let data = async {
        if pipelining {
            timed(timeout, Stage::Data, conn.read_response()).await
        } else {
            timed(timeout, Stage::Data, conn.command(Data)).await
        }
    };
    let (ready, wanted) = tokio::join!(data, gate());
    ready?;
    if let Err(why) = wanted {
        // The server waits for the message: closing the connection
        // without the final dot is the only way out, and a server never
        // delivers a message cut short (RFC 5321 4.1.1.4). A rare event
        // (an unsubscribe in the last milliseconds), so the cost of a
        // new connection does not matter.
        return Ok(Step::Stopped { why });
    }
    let sent = match block {
        Some(block) => timed(timeout, Stage::EndOfData, conn.command(block)).await,
        None => {
            let message = [header, body].concat();
            timed(timeout, Stage::EndOfData, conn.message(&message)).await
        }
    };
    sent.map(Step::Accepted)
}
