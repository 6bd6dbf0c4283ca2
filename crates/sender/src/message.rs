//! One issue, one recipient: the MIME message as the contract's "Email on
//! the wire" describes it.
//!
//! Everything that is the same for every recipient (From, List-Id,
//! Feedback-ID, the composed bodies) is prepared once per issue in
//! [`IssueMessages`]; per recipient only the token, the personalised
//! bodies and the few per-recipient headers are made.

use std::io::Write as _;
use std::sync::Arc;
use std::time::SystemTime;

use letterpress_composer::{Recipient, SendableIssue};
use letterpress_core::SubscriberName;
use letterpress_dkim::Signer;
use letterpress_signing::{Keyring, Purpose, ReturnPath};
use lettre::Message;
use lettre::address::Envelope;
use lettre::message::header::{
    self, ContentTransferEncoding, ContentType, HeaderName, HeaderValue, Headers,
};
use lettre::message::{Body, Mailbox, MessageBuilder};
use rand::Rng as _;

use crate::encoded::EncodedBody;

/// Why a message could not be built.
#[derive(Debug, thiserror::Error)]
pub enum MessageError {
    /// The recipient's address is not one lettre can put in an envelope.
    #[error("recipient address {0:?} cannot be used: {1}")]
    Recipient(String, lettre::address::AddressError),
    /// The envelope sender made from `delivery.return_path` is not an
    /// address lettre accepts.
    #[error("delivery.return_path gives {0:?}, which is not an address: {1}")]
    ReturnPath(String, lettre::address::AddressError),
    /// lettre refused the message (e.g. a missing header).
    #[error("cannot build message: {0}")]
    Build(#[from] lettre::error::Error),
    /// The message could not be DKIM-signed.
    #[error("cannot sign message: {0}")]
    Dkim(#[from] letterpress_dkim::DkimError),
    /// The message was not built: the thread building it was lost.
    #[error("the message was not built: its builder thread is gone")]
    Cancelled,
}

/// The newsletter's identity and signing, shared by every message.
pub struct MessageSettings {
    /// `newsletter.from`.
    pub from: Mailbox,
    /// `newsletter.reply_to`.
    pub reply_to: Option<Mailbox>,
    /// `newsletter.list_id`, the List-Id identifier (e.g. `news.example.com`).
    pub list_id: String,
    /// The newsletter name, used as the List-Id phrase.
    pub list_name: String,
    /// `server.public_url`, without a trailing slash.
    pub public_url: String,
    /// An optional `mailto:` address for List-Unsubscribe.
    pub unsubscribe_mailto: Option<String>,
    /// Signs the per-recipient unsubscribe tokens.
    pub keyring: Keyring,
    /// DKIM signing, when configured: keys parsed and header names
    /// prepared once, one signature per key per message.
    pub dkim: Option<Signer>,
    /// `delivery.return_path`: the envelope sender per delivery (VERP),
    /// its token signed by `keyring`. `None`: the envelope sender is From.
    pub return_path: Option<ReturnPath>,
}

impl MessageSettings {
    /// The one-click unsubscribe address of a subscriber. The token is bound to the subscriber's `token_salt`, so it acts
    /// only on the row it was made for.
    pub fn unsubscribe_url(&self, subscriber_id: i64, token_salt: u64) -> String {
        format!(
            "{}/u/{}",
            self.public_url.trim_end_matches('/'),
            self.keyring
                .token(Purpose::Unsubscribe, subscriber_id, token_salt, None)
        )
    }
}

/// Who one message is for.
#[derive(Debug, Clone, Copy)]
pub struct To<'a> {
    /// The delivery, named by the envelope sender when
    /// `delivery.return_path` is set (0 for test copies: From is used).
    pub delivery_id: i64,
    /// The subscriber's id, bound into the unsubscribe token (0 for test copies).
    pub subscriber_id: i64,
    /// The subscriber's token salt, bound into the unsubscribe token (0
    /// for test copies).
    pub token_salt: u64,
    /// The address.
    pub email: &'a str,
    /// The display name, if any.
    pub name: Option<&'a str>,
}

/// A built message and the Message-ID it carries (stored with the delivery).
pub struct Built {
    /// The message, signed when DKIM is configured.
    pub message: Outgoing,
    /// `<random@from-domain>`.
    pub message_id: String,
}

/// A message ready to go: its envelope, its header fields and its body,
/// kept apart.
///
/// Apart, not as lettre's `Message`, whose only way out is `formatted()`:
/// a fresh copy of the whole message per send, grown from empty, which the
/// SMTP client then copied again to dot-stuff it. Over SMTP the header
/// fields and the body are stuffed straight from here (one copy fewer of
/// a 35 KB message, and none of the reallocations).
#[derive(Debug)]
pub struct Outgoing {
    envelope: Envelope,
    /// Every header field, each ended by CRLF, then the empty line that
    /// ends the header section.
    head: String,
    body: Vec<u8>,
}

impl Outgoing {
    /// Who the message is from and to, for MAIL FROM and RCPT TO.
    pub fn envelope(&self) -> &Envelope {
        &self.envelope
    }

    /// The header section, ended by its empty line (`CRLF CRLF`).
    pub fn head(&self) -> &str {
        &self.head
    }

    /// The body, as it follows the header section.
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// The whole message as one RFC 5322 byte string (an `.eml` file).
    pub fn formatted(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.head.len() + self.body.len());
        out.extend_from_slice(self.head.as_bytes());
        out.extend_from_slice(&self.body);
        out
    }
}

/// The per-issue part of every message of one issue.
pub struct IssueMessages {
    issue: Arc<SendableIssue>,
    settings: Arc<MessageSettings>,
    subject: String,
    list_id: HeaderValue,
    feedback_id: HeaderValue,
    from_domain: String,
    /// The text and HTML parts encoded once, where lettre would use
    /// quoted-printable for them (see `encoded.rs`).
    text: Option<EncodedBody>,
    html: Option<EncodedBody>,
    /// The MIME boundary of this issue's messages and the multipart
    /// Content-Type that names it.
    boundary: String,
    content_type: ContentType,
    /// Bytes a message body needs besides its per-recipient values.
    body_capacity: usize,
}

const LIST_ID: HeaderName = HeaderName::new_from_ascii_str("List-Id");
const LIST_UNSUBSCRIBE: HeaderName = HeaderName::new_from_ascii_str("List-Unsubscribe");
const LIST_UNSUBSCRIBE_POST: HeaderName = HeaderName::new_from_ascii_str("List-Unsubscribe-Post");
const FEEDBACK_ID: HeaderName = HeaderName::new_from_ascii_str("Feedback-ID");
const PRECEDENCE: HeaderName = HeaderName::new_from_ascii_str("Precedence");

const DKIM_SIGNATURE: HeaderName = HeaderName::new_from_ascii_str(letterpress_dkim::HEADER_NAME);

/// The headers the DKIM signature covers: the identity headers and the
/// List-Unsubscribe pair, which mailbox providers only honour when signed.
/// Reply-To is signed when the message has it (when `newsletter.reply_to`
/// is set).
pub fn dkim_signed_headers() -> &'static [&'static str] {
    &[
        "From",
        "To",
        "Subject",
        "Date",
        "Message-ID",
        "Reply-To",
        "List-Id",
        "List-Unsubscribe",
        "List-Unsubscribe-Post",
        "Feedback-ID",
        "MIME-Version",
        "Content-Type",
    ]
}

/// Replaces CR, LF and other control characters with spaces: a subject or
/// a name can never start a new header line, whatever lettre's encoder does.
pub fn header_safe(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .trim()
        .to_string()
}

impl IssueMessages {
    /// Prepares the parts shared by every recipient of `issue`.
    pub fn new(issue: Arc<SendableIssue>, settings: Arc<MessageSettings>) -> Self {
        let list_id = format!(
            "{} <{}>",
            header_safe(&settings.list_name),
            header_safe(&settings.list_id)
        );
        // Feedback-ID is stable per issue (Gmail aggregates complaints by it):
        // campaign:list:type:sender.
        let feedback_id = format!(
            "{}:{}:newsletter:letterpress",
            issue.slug,
            header_safe(&settings.list_id)
        );
        let from_domain = settings.from.email.domain().to_string();
        let text = EncodedBody::prepare(&issue.text);
        let html = EncodedBody::prepare(&issue.html);
        let body_capacity = [(&text, &issue.text), (&html, &issue.html)]
            .iter()
            .map(|(encoded, body)| {
                encoded
                    .as_ref()
                    .map_or(body.as_str().len(), |e| e.literal_len())
            })
            .sum::<usize>()
            + 2048;
        let boundary = mime_boundary();
        let content_type =
            ContentType::parse(&format!("multipart/alternative; boundary=\"{boundary}\""))
                // Entirely ours: a fixed type and a boundary of `=_` and
                // letters and digits, which always parses.
                .expect("a multipart Content-Type with an alphanumeric boundary parses");
        Self {
            text,
            html,
            boundary,
            content_type,
            body_capacity,
            subject: header_safe(&issue.subject),
            list_id: HeaderValue::new(LIST_ID, list_id),
            feedback_id: HeaderValue::new(FEEDBACK_ID, feedback_id),
            from_domain,
            issue,
            settings,
        }
    }

    /// Whether the messages are DKIM-signed.
    pub fn signs(&self) -> bool {
        self.settings.dkim.is_some()
    }

    /// The issue these messages are made from.
    pub fn issue(&self) -> &SendableIssue {
        &self.issue
    }

    /// Builds (and signs) the message for one recipient.
    pub fn build(&self, to: To<'_>) -> Result<Built, MessageError> {
        let address: lettre::Address = to
            .email
            .parse()
            .map_err(|e| MessageError::Recipient(to.email.to_string(), e))?;
        let envelope = match &self.settings.return_path {
            Some(rp) if to.delivery_id > 0 => {
                let sender = rp.address(&self.settings.keyring, to.delivery_id);
                let sender: lettre::Address = sender
                    .parse()
                    .map_err(|e| MessageError::ReturnPath(sender.clone(), e))?;
                Some(lettre::address::Envelope::new(
                    Some(sender),
                    vec![address.clone()],
                )?)
            }
            _ => None,
        };
        // The one name rule, also for a name stored before it: no control
        // character, at most 200 characters, so `To:` (folded by lettre)
        // keeps every line within RFC 5322's 998.
        let name = to
            .name
            .and_then(SubscriberName::parse_truncated)
            .map(SubscriberName::into_string);
        let unsubscribe_url = self
            .settings
            .unsubscribe_url(to.subscriber_id, to.token_salt);
        let recipient = Recipient {
            email: to.email,
            name: name.as_deref(),
            unsubscribe_url: &unsubscribe_url,
        };
        // Time-ordered (UUIDv7: milliseconds, then a counter and random
        // bits; ordered within this process), so the stored Message-IDs
        // append to the end of their index. Random v4 ids put every
        // outcome on a leaf page of its own: each group commit wrote one
        // more index page per message to SQLite's WAL (and dirtied one
        // more page on PostgreSQL). The time they give away is in `Date:`.
        let message_id = format!("<{}@{}>", uuid::Uuid::now_v7().simple(), self.from_domain);
        let list_unsubscribe = match &self.settings.unsubscribe_mailto {
            Some(mailto) => format!("<{unsubscribe_url}>, <mailto:{mailto}?subject=unsubscribe>"),
            None => format!("<{unsubscribe_url}>"),
        };
        let body = self.multipart_body(&recipient);
        let date = SystemTime::now();
        let mailbox = Mailbox::new(name, address);
        // The multipart's Content-Type is a message header here (lettre's
        // own multipart writes it into the body, where DKIM never sees it),
        // so the signature covers it like the others. Every part is 7-bit
        // (quoted-printable, base64 or short ASCII lines), so the whole body
        // is too.
        let message = assemble(
            self.settings.dkim.as_ref(),
            |builder| {
                let builder = self.headers(builder, &mailbox, date, &message_id, &list_unsubscribe);
                match &envelope {
                    Some(envelope) => builder.envelope(envelope.clone()),
                    None => builder,
                }
            },
            body,
            ContentTransferEncoding::SevenBit,
            date,
        )?;
        Ok(Built {
            message,
            message_id,
        })
    }

    /// The message's header fields, after those `builder` already has.
    fn headers(
        &self,
        builder: MessageBuilder,
        to: &Mailbox,
        date: SystemTime,
        message_id: &str,
        list_unsubscribe: &str,
    ) -> MessageBuilder {
        let mut builder = builder
            .from(self.settings.from.clone())
            .to(to.clone())
            .subject(self.subject.clone())
            .date(date)
            .message_id(Some(message_id.to_string()))
            .raw_header(self.list_id.clone())
            .raw_header(HeaderValue::new(
                LIST_UNSUBSCRIBE,
                list_unsubscribe.to_string(),
            ))
            .raw_header(HeaderValue::new(
                LIST_UNSUBSCRIBE_POST,
                "List-Unsubscribe=One-Click".to_string(),
            ))
            .raw_header(self.feedback_id.clone())
            .raw_header(HeaderValue::new(PRECEDENCE, "bulk".to_string()));
        if let Some(reply_to) = &self.settings.reply_to {
            builder = builder.reply_to(reply_to.clone());
        }
        builder
            .header(header::MIME_VERSION_1_0)
            .header(self.content_type.clone())
    }

    /// The multipart/alternative body for `r`: the text part, then the
    /// HTML part, each with its headers between the issue's boundary lines, as
    /// lettre's `MultiPart` writes them. Written here into one buffer sized
    /// up front: lettre's builder grows its buffers from empty and copied
    /// each 35 KB body several times on its way to the wire.
    fn multipart_body(&self, r: &Recipient<'_>) -> Vec<u8> {
        let boundary = self.boundary.as_str();
        let parts = [
            (
                "text/plain; charset=utf-8",
                self.text.as_ref(),
                &self.issue.text,
            ),
            (
                "text/html; charset=utf-8",
                self.html.as_ref(),
                &self.issue.html,
            ),
        ];
        let mut out = Vec::with_capacity(self.body_capacity);
        for (content_type, encoded, body) in parts {
            let head = |out: &mut Vec<u8>, encoding: ContentTransferEncoding| {
                out.extend_from_slice(b"--");
                out.extend_from_slice(boundary.as_bytes());
                // Writing to a Vec cannot fail.
                let _ = write!(
                    out,
                    "\r\nContent-Type: {content_type}\r\nContent-Transfer-Encoding: {encoding}\r\n\r\n"
                );
            };
            match encoded {
                Some(e) => {
                    head(&mut out, ContentTransferEncoding::QuotedPrintable);
                    e.render_into(body, r, &mut out);
                }
                None => {
                    let encoded = Body::new(body.render(r));
                    head(&mut out, encoded.encoding());
                    out.extend_from_slice(encoded.as_ref());
                }
            }
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"--");
        out.extend_from_slice(boundary.as_bytes());
        out.extend_from_slice(b"--\r\n");
        out
    }
}

/// The message of `headers` (a function that adds every field to a
/// builder) and `body` (already transfer-encoded as `encoding` says, CRLF
/// line ends), DKIM-signed by `dkim` when it is set.
///
/// DKIM-Signature goes above the fields it signs (RFC 6376 §3.5:
/// prepended, like a trace field), and lettre only appends fields: the
/// fields are made once without the body to be signed (the body is signed
/// where it is, not copied), then again after the signature. That costs a
/// few µs against the signature's 250.
fn assemble(
    dkim: Option<&Signer>,
    headers: impl Fn(MessageBuilder) -> MessageBuilder,
    body: Vec<u8>,
    encoding: ContentTransferEncoding,
    date: SystemTime,
) -> Result<Outgoing, MessageError> {
    // lettre makes and checks the header fields (and the envelope from
    // them); the body never goes into it, so it is never copied there and
    // back (see `Outgoing`).
    let fields =
        headers(Message::builder()).body(Body::dangerous_pre_encoded(Vec::new(), encoding))?;
    let mut head = fields.headers().to_string();
    if let Some(signer) = dkim {
        let signature = signer.sign_parts(head.as_bytes(), &body, date)?;
        // Above the fields it signs, where a verifier looks for it.
        let mut field = Headers::new();
        field.insert_raw(dkim_field(signature));
        head.insert_str(0, &field.to_string());
    }
    head.push_str("\r\n");
    Ok(Outgoing {
        envelope: fields.envelope().clone(),
        head,
        body,
    })
}

impl MessageSettings {
    /// The double opt-in confirmation of a signup, made like an issue's
    /// messages: the newsletter's From, a Message-ID at the From domain,
    /// DKIM-signed when DKIM is configured; one `text/plain; charset=utf-8`
    /// part. It is not list mail, so it has no List-* or Precedence fields.
    pub fn confirmation(
        &self,
        email: &str,
        name: Option<&str>,
        confirm_url: &str,
    ) -> Result<Built, MessageError> {
        let address = email
            .parse()
            .map_err(|e| MessageError::Recipient(email.to_string(), e))?;
        let name = name
            .and_then(SubscriberName::parse_truncated)
            .map(SubscriberName::into_string);
        let to = Mailbox::new(name, address);
        let message_id = format!(
            "<{}@{}>",
            uuid::Uuid::new_v4().simple(),
            self.from.email.domain()
        );
        let list = header_safe(&self.list_name);
        let text = format!(
            "Hello,\r\n\r\nplease confirm that you want to receive {list}:\r\n\r\n{confirm_url}\r\n\r\n\
             If you did not sign up, ignore this message and nothing will happen.\r\n"
        );
        // lettre picks the transfer encoding (7bit, or quoted-printable for
        // a name with non-ASCII letters) and encodes once.
        let body = Body::new(text);
        let encoding = body.encoding();
        let date = SystemTime::now();
        let subject = format!("Confirm your subscription to {list}");
        let message = assemble(
            self.dkim.as_ref(),
            |builder| {
                let mut builder = builder
                    .from(self.from.clone())
                    .to(to.clone())
                    .subject(subject.clone())
                    .date(date)
                    .message_id(Some(message_id.clone()));
                if let Some(reply_to) = &self.reply_to {
                    builder = builder.reply_to(reply_to.clone());
                }
                builder
                    .header(header::MIME_VERSION_1_0)
                    .header(ContentType::TEXT_PLAIN)
            },
            body.into_vec(),
            encoding,
            date,
        )?;
        Ok(Built {
            message,
            message_id,
        })
    }
}

/// The `DKIM-Signature: …\r\n` field(s) from [`Signer::sign_parts`] as
/// one lettre header value, already folded. With two signatures the value
/// holds the line break and the second field's name: lettre keeps one
/// value per name, and writes `name: value\r\n` as given.
fn dkim_field(fields: String) -> HeaderValue {
    let prefix = const { letterpress_dkim::HEADER_NAME.len() + 2 };
    let value = fields
        .get(prefix..fields.len().saturating_sub(2))
        .unwrap_or_default()
        .to_string();
    HeaderValue::dangerous_new_pre_encoded(DKIM_SIGNATURE, value.clone(), value)
}

/// A fresh MIME boundary, one per issue. It starts with `=_`, which neither
/// quoted-printable nor base64 can produce, and has 30 random letters and
/// digits against the 7-bit parts: their per-recipient values are set
/// before the issue's boundary exists, so none can contain it.
fn mime_boundary() -> String {
    let random: String = rand::rng()
        .sample_iter(rand::distr::Alphanumeric)
        .take(30)
        .map(char::from)
        .collect();
    format!("=_{random}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_safe_removes_line_breaks() {
        assert_eq!(
            header_safe("Hello\r\nBcc: evil@x.example"),
            "Hello  Bcc: evil@x.example"
        );
        assert_eq!(header_safe(" plain "), "plain");
    }
}
