//! What a server's refusal says: where it came, its basic code, and the
//! enhanced status code (RFC 3463) in its text.

use std::fmt;

/// Where in the session a reply (or a failure) came.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Setting the connection up: greeting, EHLO, STARTTLS, AUTH.
    Session,
    /// `MAIL FROM`: about the envelope sender.
    Mail,
    /// `RCPT TO`: about the recipient.
    Rcpt,
    /// The `DATA` command itself.
    Data,
    /// The reply to the message (after the final dot).
    EndOfData,
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Session => "connection set-up",
            Self::Mail => "MAIL FROM",
            Self::Rcpt => "RCPT TO",
            Self::Data => "DATA",
            Self::EndOfData => "end of data",
        })
    }
}

/// An enhanced status code (RFC 3463), `class.subject.detail`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EnhancedCode {
    /// 2, 4 or 5.
    pub class: u8,
    /// The subject (1 = addressing, 2 = mailbox, 7 = security/policy, ...).
    pub subject: u16,
    /// The detail within the subject.
    pub detail: u16,
}

impl EnhancedCode {
    /// Finds the first enhanced status code in a reply text, e.g. `5.1.1`
    /// in `"550 5.1.1 <bob@x>: Recipient address rejected"`.
    ///
    /// Written by hand: it is a few lines and no maintained crate parses
    /// just this out of free reply text.
    pub(crate) fn find(text: &str) -> Option<EnhancedCode> {
        text.split(|c: char| c.is_whitespace() || c == '(' || c == ')' || c == ':' || c == ',')
            .find_map(|word| {
                let mut parts = word.split('.');
                let class = parts.next()?.parse::<u8>().ok()?;
                let subject = parts.next()?.parse::<u16>().ok()?;
                let detail = parts.next()?.parse::<u16>().ok()?;
                if parts.next().is_some() || !matches!(class, 2 | 4 | 5) {
                    return None;
                }
                Some(EnhancedCode {
                    class,
                    subject,
                    detail,
                })
            })
    }
}

impl fmt::Display for EnhancedCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.class, self.subject, self.detail)
    }
}

/// A server's reply that refused what was asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The command it answered.
    pub stage: Stage,
    /// The basic code, e.g. 550.
    pub code: u16,
    /// The enhanced code found in the text, if any.
    pub enhanced: Option<EnhancedCode>,
    /// The text after the code, lines joined by spaces.
    pub text: String,
}

impl Reply {
    /// The reply to `stage` with `code` and `text`; the enhanced code is
    /// read from the text.
    pub(crate) fn new(stage: Stage, code: u16, text: String) -> Reply {
        Reply {
            stage,
            code,
            enhanced: EnhancedCode::find(&text),
            text,
        }
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} (at {})", self.code, self.text, self.stage)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_enhanced_codes_in_reply_text() {
        assert_eq!(
            EnhancedCode::find("550 5.1.1 <bob@x.example>: Recipient address rejected"),
            Some(EnhancedCode {
                class: 5,
                subject: 1,
                detail: 1
            })
        );
        assert_eq!(
            EnhancedCode::find("permanent error (550): 5.2.1 mailbox disabled").map(|e| e.subject),
            Some(2)
        );
        assert_eq!(EnhancedCode::find("550 no such user"), None);
        assert_eq!(EnhancedCode::find("version 1.2.3 here"), None);
    }

    #[test]
    fn a_refusal_reads_as_code_text_and_stage() {
        let r = Reply::new(Stage::Rcpt, 550, "5.1.1 user unknown".into());
        assert_eq!(r.to_string(), "550 5.1.1 user unknown (at RCPT TO)");
        assert_eq!(r.enhanced.map(|e| e.to_string()).as_deref(), Some("5.1.1"));
    }
}
