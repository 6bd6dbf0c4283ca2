//! RFC 3463 enhanced status codes (`5.1.1`) and the DSN `Action` field.

use std::fmt;

/// An enhanced status code, `class.subject.detail` (RFC 3463): class 2
/// success, 4 persistent transient failure, 5 permanent failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Status {
    /// 2, 4 or 5.
    pub class: u8,
    /// 0..=999.
    pub subject: u16,
    /// 0..=999.
    pub detail: u16,
}

impl Status {
    /// Parses the first word of a `Status:` value (`5.1.1`, `4.4.7
    /// (delivery time expired)`); `None` unless it is a well-formed code of
    /// class 2, 4 or 5.
    pub fn parse(value: &str) -> Option<Status> {
        let word = value.split_whitespace().next()?;
        let mut parts = word.split('.');
        let class: u8 = parts.next()?.parse().ok()?;
        let subject: u16 = parts.next()?.parse().ok()?;
        let detail: u16 = parts.next()?.parse().ok()?;
        if parts.next().is_some() || !matches!(class, 2 | 4 | 5) || subject > 999 || detail > 999 {
            return None;
        }
        Some(Status {
            class,
            subject,
            detail,
        })
    }

    /// The status a `Diagnostic-Code` carries when the `Status` field is
    /// missing or malformed: the first enhanced code in it (`550 5.1.1
    /// …`), else the class of a basic reply code (`550 …` → `5.0.0`).
    pub fn from_diagnostic(diagnostic: &str) -> Option<Status> {
        let words = diagnostic
            .split(|c: char| c.is_whitespace() || c == '-' || c == '#')
            .take(8);
        let mut basic = None;
        for word in words {
            let word = word.trim_matches(|c: char| !c.is_ascii_digit());
            if let Some(status) = Status::parse(word) {
                return Some(status);
            }
            if basic.is_none() && word.len() == 3 && word.bytes().all(|b| b.is_ascii_digit()) {
                basic = match word.as_bytes()[0] {
                    b'4' => Some(Status {
                        class: 4,
                        subject: 0,
                        detail: 0,
                    }),
                    b'5' => Some(Status {
                        class: 5,
                        subject: 0,
                        detail: 0,
                    }),
                    _ => None,
                };
            }
        }
        basic
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.class, self.subject, self.detail)
    }
}

/// The `Action` of one recipient in a DSN (RFC 3464 §2.3.3).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// The message could not be delivered and will not be retried.
    Failed,
    /// Not delivered yet; the reporting MTA keeps trying.
    Delayed,
    /// Delivered.
    Delivered,
    /// Handed on to a system that sends no DSN.
    Relayed,
    /// Delivered and forwarded to more addresses.
    Expanded,
    /// Any other value, lowercased.
    Other(String),
}

impl Action {
    /// Parses an `Action:` value (case-insensitive, a trailing comment
    /// ignored).
    pub fn parse(value: &str) -> Action {
        let word = value
            .split(|c: char| c.is_whitespace() || c == '(')
            .next()
            .unwrap_or("")
            .to_ascii_lowercase();
        match word.as_str() {
            "failed" => Action::Failed,
            "delayed" => Action::Delayed,
            "delivered" => Action::Delivered,
            "relayed" => Action::Relayed,
            "expanded" => Action::Expanded,
            _ => Action::Other(word),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn well_formed_codes_parse() {
        assert_eq!(
            Status::parse("5.1.1").map(|s| s.to_string()).as_deref(),
            Some("5.1.1")
        );
        assert_eq!(
            Status::parse("4.4.7 (delivery time expired)").map(|s| s.class),
            Some(4)
        );
        assert_eq!(Status::parse("5.1.10").map(|s| s.detail), Some(10));
        for bad in ["", "5.1", "5.1.1.1", "3.1.1", "5.x.1", "5.1000.1", "550"] {
            assert_eq!(Status::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_diagnostic_code_gives_a_status() {
        let got = |d: &str| Status::from_diagnostic(d).map(|s| s.to_string());
        assert_eq!(
            got("550 5.1.1 <a@x>: Recipient address rejected").as_deref(),
            Some("5.1.1")
        );
        assert_eq!(
            got("550-5.1.1 The email account does not exist").as_deref(),
            Some("5.1.1")
        );
        assert_eq!(got("550 #5.1.0 Address rejected").as_deref(), Some("5.1.0"));
        assert_eq!(got("452 mailbox full").as_deref(), Some("4.0.0"));
        assert_eq!(got("mailbox unavailable"), None);
    }

    #[test]
    fn actions_parse_case_insensitively() {
        assert_eq!(Action::parse("Failed"), Action::Failed);
        assert_eq!(Action::parse("delayed (retrying)"), Action::Delayed);
        assert_eq!(Action::parse("RELAYED"), Action::Relayed);
        assert_eq!(Action::parse("weird"), Action::Other("weird".into()));
    }
}
