use std::fmt;
use std::str::FromStr;

/// An email address that parsed as something a mail server can deliver to.
///
/// The address is kept exactly as given (trimmed of surrounding white space);
/// [`SubscriberEmail::key`] gives the case-folded form used for uniqueness,
/// because operators and import files disagree on letter case while mailbox
/// providers, in practice, do not.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct SubscriberEmail(String);

/// Why a string is not a [`SubscriberEmail`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{input:?} is not a valid email address{}", reason_suffix(.reason))]
pub struct InvalidEmail {
    /// The rejected input, as given.
    pub input: String,
    /// A short explanation, when there is one better than "invalid".
    pub reason: &'static str,
}

fn reason_suffix(reason: &str) -> String {
    if reason.is_empty() {
        String::new()
    } else {
        format!(" ({reason})")
    }
}

impl SubscriberEmail {
    /// Parses an address. Internationalised local parts and domains
    /// (`jörg@bücher.de`) are accepted; display names (`Bob <bob@x>`),
    /// control characters and domains without a dot are not.
    pub fn parse(input: &str) -> Result<Self, InvalidEmail> {
        let trimmed = input.trim();
        let fail = |reason: &'static str| InvalidEmail {
            input: input.to_string(),
            reason,
        };
        if trimmed.is_empty() {
            return Err(fail("empty"));
        }
        // Header injection and display-name forms are refused before the
        // grammar check: an address travels into SMTP envelopes and headers.
        if trimmed
            .chars()
            .any(|c| c.is_control() || c.is_whitespace() || c == '<' || c == '>')
        {
            return Err(fail(
                "contains spaces, angle brackets or control characters",
            ));
        }
        if trimmed.len() > 254 {
            return Err(fail("longer than 254 characters"));
        }
        let parsed = email_address::EmailAddress::from_str(trimmed).map_err(|_| fail(""))?;
        let domain = parsed.domain();
        // A bare host ("bob@localhost") or an address literal is never a
        // newsletter reader's mailbox; rejecting it catches typos like "bob@gmail".
        if !domain.contains('.') || domain.starts_with('[') || domain.ends_with('.') {
            return Err(fail("the domain needs a dot"));
        }
        Ok(Self(trimmed.to_string()))
    }

    /// The address as given.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The case-folded address: the uniqueness key of a subscriber.
    pub fn key(&self) -> String {
        normalize_key(&self.0)
    }

    /// The domain part (after the last `@`), as given.
    pub fn domain(&self) -> &str {
        self.0.rsplit_once('@').map(|(_, d)| d).unwrap_or("")
    }
}

/// Case-folds an address for comparison without parsing it, for lookups with
/// input that may not be valid (an unsubscribe webhook naming an odd address).
pub fn normalize_key(address: &str) -> String {
    address.trim().to_lowercase()
}

impl AsRef<str> for SubscriberEmail {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SubscriberEmail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for SubscriberEmail {
    type Err = InvalidEmail;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl<'de> serde::Deserialize<'de> for SubscriberEmail {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_and_international_addresses() {
        for ok in [
            "bob@example.com",
            "  Bob.Smith+news@Example.COM ",
            "jörg@bücher.de",
            "用户@例子.广告",
        ] {
            assert!(SubscriberEmail::parse(ok).is_ok(), "{ok} should parse");
        }
    }

    #[test]
    fn rejects_what_cannot_be_delivered() {
        for bad in [
            "",
            "bob@",
            "@example.com",
            "bob",
            "bob@localhost",
            "Bob <bob@example.com>",
            "bob@example.com\r\nBcc: x@y.z",
            "bob smith@example.com",
            "bob@@example.com",
        ] {
            assert!(SubscriberEmail::parse(bad).is_err(), "{bad:?} should fail");
        }
    }

    #[test]
    fn key_is_case_folded_and_display_is_as_given() {
        let e = SubscriberEmail::parse("Bob@Example.com").unwrap();
        assert_eq!(e.key(), "bob@example.com");
        assert_eq!(e.to_string(), "Bob@Example.com");
        assert_eq!(e.domain(), "Example.com");
    }

    #[test]
    fn error_message_quotes_the_input() {
        let err = SubscriberEmail::parse("bob@").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("\"bob@\" is not a valid email address")
        );
    }
}
