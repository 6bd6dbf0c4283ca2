//! One issue, one recipient: the MIME message as the contract's "Email on
//! the wire" describes it.
//!
//! Everything that is the same for every recipient (From, List-Id,
//! Feedback-ID, the composed bodies) is prepared once per issue in
//! [`IssueMessages`]; per recipient only the token, the personalised
//! bodies and the few per-recipient headers are made.

use std::sync::Arc;

use letterpress_composer::{ComposedIssue, Recipient};
use letterpress_signing::{Keyring, Purpose};
use lettre::Message;
use lettre::message::dkim::DkimConfig;
use lettre::message::header::{ContentTransferEncoding, ContentType, HeaderName, HeaderValue};
use lettre::message::{Body, Mailbox, MultiPart, SinglePart};

use crate::encoded::EncodedBody;

/// Why a message could not be built.
#[derive(Debug, thiserror::Error)]
pub enum MessageError {
    /// The recipient's address is not one lettre can put in an envelope.
    #[error("recipient address {0:?} cannot be used: {1}")]
    Recipient(String, lettre::address::AddressError),
    /// lettre refused the message (e.g. a missing header).
    #[error("cannot build message: {0}")]
    Build(#[from] lettre::error::Error),
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
    /// DKIM signing, when configured.
    pub dkim: Option<Arc<DkimConfig>>,
}

impl MessageSettings {
    /// The one-click unsubscribe address of a subscriber.
    pub fn unsubscribe_url(&self, subscriber_id: i64) -> String {
        format!(
            "{}/u/{}",
            self.public_url.trim_end_matches('/'),
            self.keyring
                .token(Purpose::Unsubscribe, subscriber_id, None)
        )
    }
}

/// Who one message is for.
#[derive(Debug, Clone, Copy)]
pub struct To<'a> {
    /// The subscriber's id, bound into the unsubscribe token (0 for test copies).
    pub subscriber_id: i64,
    /// The address.
    pub email: &'a str,
    /// The display name, if any.
    pub name: Option<&'a str>,
}

/// A built message and the Message-ID it carries (stored with the delivery).
pub struct Built {
    /// The message, signed when DKIM is configured.
    pub message: Message,
    /// `<random@from-domain>`.
    pub message_id: String,
}

/// The per-issue part of every message of one issue.
pub struct IssueMessages {
    issue: Arc<ComposedIssue>,
    settings: Arc<MessageSettings>,
    subject: String,
    list_id: HeaderValue,
    feedback_id: HeaderValue,
    from_domain: String,
    /// The text and HTML parts encoded once, where lettre would use
    /// quoted-printable for them (see `encoded.rs`).
    text: Option<EncodedBody>,
    html: Option<EncodedBody>,
}

const LIST_ID: HeaderName = HeaderName::new_from_ascii_str("List-Id");
const LIST_UNSUBSCRIBE: HeaderName = HeaderName::new_from_ascii_str("List-Unsubscribe");
const LIST_UNSUBSCRIBE_POST: HeaderName = HeaderName::new_from_ascii_str("List-Unsubscribe-Post");
const FEEDBACK_ID: HeaderName = HeaderName::new_from_ascii_str("Feedback-ID");
const PRECEDENCE: HeaderName = HeaderName::new_from_ascii_str("Precedence");

/// The headers the DKIM signature covers: the identity headers and the
/// List-Unsubscribe pair, which mailbox providers only honour when signed.
pub fn dkim_signed_headers() -> Vec<HeaderName> {
    [
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
    .into_iter()
    .map(HeaderName::new_from_ascii_str)
    .collect()
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
    pub fn new(issue: Arc<ComposedIssue>, settings: Arc<MessageSettings>) -> Self {
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
        Self {
            text: EncodedBody::prepare(&issue.text),
            html: EncodedBody::prepare(&issue.html),
            subject: header_safe(&issue.subject),
            list_id: HeaderValue::new(LIST_ID, list_id),
            feedback_id: HeaderValue::new(FEEDBACK_ID, feedback_id),
            from_domain,
            issue,
            settings,
        }
    }

    /// The composed issue.
    pub fn issue(&self) -> &ComposedIssue {
        &self.issue
    }

    /// Builds (and signs) the message for one recipient.
    pub fn build(&self, to: To<'_>) -> Result<Built, MessageError> {
        let address = to
            .email
            .parse()
            .map_err(|e| MessageError::Recipient(to.email.to_string(), e))?;
        let name = to.name.map(header_safe).filter(|n| !n.is_empty());
        let unsubscribe_url = self.settings.unsubscribe_url(to.subscriber_id);
        let recipient = Recipient {
            email: to.email,
            name: name.as_deref(),
            unsubscribe_url: &unsubscribe_url,
        };
        let text = part_body(self.text.as_ref(), &self.issue.text, &recipient);
        let html = part_body(self.html.as_ref(), &self.issue.html, &recipient);
        let message_id = format!("<{}@{}>", uuid::Uuid::new_v4().simple(), self.from_domain);
        let list_unsubscribe = match &self.settings.unsubscribe_mailto {
            Some(mailto) => format!("<{unsubscribe_url}>, <mailto:{mailto}?subject=unsubscribe>"),
            None => format!("<{unsubscribe_url}>"),
        };
        let mut builder = Message::builder()
            .from(self.settings.from.clone())
            .to(Mailbox::new(name, address))
            .subject(self.subject.clone())
            .date_now()
            .message_id(Some(message_id.clone()))
            .raw_header(self.list_id.clone())
            .raw_header(HeaderValue::new(LIST_UNSUBSCRIBE, list_unsubscribe))
            .raw_header(HeaderValue::new(
                LIST_UNSUBSCRIBE_POST,
                "List-Unsubscribe=One-Click".to_string(),
            ))
            .raw_header(self.feedback_id.clone())
            .raw_header(HeaderValue::new(PRECEDENCE, "bulk".to_string()));
        if let Some(reply_to) = &self.settings.reply_to {
            builder = builder.reply_to(reply_to.clone());
        }
        let mut message = builder.multipart(
            MultiPart::alternative()
                .singlepart(SinglePart::plain(text))
                .singlepart(SinglePart::html(html)),
        )?;
        if let Some(dkim) = &self.settings.dkim {
            sign(&mut message, dkim);
        }
        Ok(Built {
            message,
            message_id,
        })
    }
}

/// One part's body for `r`: spliced from the pre-encoded form when there
/// is one, else personalised and encoded by lettre.
fn part_body(
    encoded: Option<&EncodedBody>,
    body: &letterpress_composer::Personalizable,
    r: &Recipient<'_>,
) -> Body {
    match encoded {
        Some(e) => {
            Body::dangerous_pre_encoded(e.render(body, r), ContentTransferEncoding::QuotedPrintable)
        }
        None => Body::new(body.render(r)),
    }
}

/// Signs `message` with DKIM, `Content-Type` included.
///
/// lettre writes a multipart's own headers (its `Content-Type` with the
/// boundary) as the start of the body, after the message headers, so
/// `Message::sign` never sees them: the signature it makes leaves
/// `Content-Type` out of the hash while `h=` lists it, and every verifier
/// (which reads it in the header block) rejects the signature. So the
/// part's `Content-Type` is put among the message headers while signing and
/// taken out again; on the wire it appears once, where it always did.
fn sign(message: &mut Message, dkim: &DkimConfig) {
    let part_content_type = {
        let head_len = message.headers().to_string().len();
        let formatted = message.formatted();
        formatted.get(head_len..).and_then(|part| {
            let part = std::str::from_utf8(part).ok()?;
            let head = &part[..part.find("\r\n\r\n")?];
            let unfolded = head.replace("\r\n ", " ").replace("\r\n\t", " ");
            unfolded.lines().find_map(|line| {
                let (name, value) = line.split_once(':')?;
                name.eq_ignore_ascii_case("Content-Type")
                    .then(|| ContentType::parse(value.trim()).ok())
                    .flatten()
            })
        })
    };
    match part_content_type {
        Some(content_type) if message.headers().get::<ContentType>().is_none() => {
            message.headers_mut().set(content_type);
            message.sign(dkim);
            message.headers_mut().remove::<ContentType>();
        }
        _ => message.sign(dkim),
    }
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
