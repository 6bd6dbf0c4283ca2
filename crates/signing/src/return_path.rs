//! VERP: an envelope sender per delivery (`delivery.return_path`, e.g.
//! `bounces+{token}@bounce.example.com`), so that a delivery status
//! notification mailed back to it names its delivery even when it quotes
//! nothing of the original message.
//!
//! The token is `{delivery id}-{20 hex digits}`: the id in decimal and the
//! first 80 bits of HMAC-SHA256(key, purpose byte ‖ id), lower-case, since
//! some mail systems fold the case of local parts. It is read back in any
//! letter case and checked in constant time against the current and the
//! previous keys.

use hmac::Mac;

use crate::{Keyring, Purpose, mac};

/// Bytes of the HMAC in a return-path token.
const TAG_LEN: usize = 10;
/// Where the token goes in the template.
const PLACEHOLDER: &str = "{token}";

/// Why a `delivery.return_path` template is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReturnPathError {
    /// The template lacks `{token}`, has it twice, or has it outside the
    /// local part.
    #[error(
        "must contain {{token}} once, in the part before the @ (e.g. bounces+{{token}}@bounce.example.com)"
    )]
    Placeholder,
    /// The template is not `local@domain` with a domain.
    #[error("must be an address local@domain")]
    NotAnAddress,
}

/// A parsed `delivery.return_path` template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReturnPath {
    prefix: String,
    suffix: String,
}

impl ReturnPath {
    /// Parses a template such as `bounces+{token}@bounce.example.com`.
    pub fn parse(template: &str) -> Result<Self, ReturnPathError> {
        let template = template.trim();
        let (prefix, suffix) = template
            .split_once(PLACEHOLDER)
            .ok_or(ReturnPathError::Placeholder)?;
        if suffix.contains(PLACEHOLDER) || prefix.contains('@') {
            return Err(ReturnPathError::Placeholder);
        }
        let Some((_, domain)) = suffix.split_once('@') else {
            return Err(ReturnPathError::Placeholder);
        };
        if domain.is_empty()
            || domain.contains('@')
            || template
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || c == '<' || c == '>')
        {
            return Err(ReturnPathError::NotAnAddress);
        }
        Ok(Self {
            prefix: prefix.to_string(),
            suffix: suffix.to_string(),
        })
    }

    /// The envelope sender of `delivery_id`.
    pub fn address(&self, keys: &Keyring, delivery_id: i64) -> String {
        format!(
            "{}{}{}",
            self.prefix,
            token(keys.current_key(), delivery_id),
            self.suffix
        )
    }

    /// The delivery an address made by [`ReturnPath::address`] names (with
    /// or without `<>`, in any letter case), under the current or a
    /// previous key; `None` for any other address or a forged token.
    pub fn delivery_of(&self, keys: &Keyring, address: &str) -> Option<i64> {
        let address = address.trim().trim_start_matches('<').trim_end_matches('>');
        let lower = address.to_ascii_lowercase();
        let prefix = self.prefix.to_ascii_lowercase();
        let suffix = self.suffix.to_ascii_lowercase();
        if lower.len() < prefix.len() + suffix.len()
            || !lower.starts_with(&prefix)
            || !lower.ends_with(&suffix)
        {
            return None;
        }
        verify(keys, &lower[prefix.len()..lower.len() - suffix.len()])
    }
}

fn tag(key: &[u8], delivery_id: i64) -> hmac::Hmac<sha2::Sha256> {
    let mut data = [0u8; 9];
    data[0] = Purpose::ReturnPath as u8;
    data[1..].copy_from_slice(&delivery_id.to_be_bytes());
    mac(key, &data)
}

/// The token naming `delivery_id` under `key`.
fn token(key: &[u8], delivery_id: i64) -> String {
    let full = tag(key, delivery_id).finalize().into_bytes();
    format!("{delivery_id}-{}", hex::encode(&full[..TAG_LEN]))
}

/// The delivery id a token names, if any key signed it. The comparison is
/// `hmac`'s constant-time `verify_truncated_left`.
fn verify(keys: &Keyring, token: &str) -> Option<i64> {
    let (id, tag_hex) = token.split_once('-')?;
    if id.is_empty() || id.len() > 19 || !id.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let id: i64 = id.parse().ok()?;
    let mut given = [0u8; TAG_LEN];
    hex::decode_to_slice(tag_hex.to_ascii_lowercase(), &mut given).ok()?;
    std::iter::once(keys.current_key())
        .chain(keys.previous_keys())
        .any(|key| tag(key, id).verify_truncated_left(&given).is_ok())
        .then_some(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"0123456789abcdef0123456789abcdef-current";
    const OLD: &[u8] = b"0123456789abcdef0123456789abcdef-previous";

    #[test]
    fn addresses_name_their_delivery_and_nothing_else() {
        let rp = ReturnPath::parse("bounces+{token}@bounce.example.com").unwrap();
        let keys = Keyring::new(KEY, &[]).unwrap();
        let a = rp.address(&keys, 4711);
        assert!(
            a.starts_with("bounces+4711-") && a.ends_with("@bounce.example.com"),
            "{a}"
        );
        assert_eq!(rp.delivery_of(&keys, &a), Some(4711));
        assert_eq!(rp.delivery_of(&keys, &a.to_ascii_uppercase()), Some(4711));
        assert_eq!(rp.delivery_of(&keys, &format!("<{a}>")), Some(4711));
        // Another id with the same tag, a changed tag digit, another domain,
        // the same token under another key: all refused.
        assert_eq!(rp.delivery_of(&keys, &a.replace("4711-", "4712-")), None);
        let tag_at = a.find('-').unwrap() + 1;
        let mut changed = a.clone().into_bytes();
        changed[tag_at] = if changed[tag_at] == b'0' { b'1' } else { b'0' };
        assert_eq!(
            rp.delivery_of(&keys, &String::from_utf8(changed).unwrap()),
            None
        );
        assert_eq!(
            rp.delivery_of(&keys, &a.replace("example.com", "example.org")),
            None
        );
        assert_eq!(rp.delivery_of(&keys, "bounces+@bounce.example.com"), None);
        assert_eq!(rp.delivery_of(&keys, "someone@example.com"), None);
        let other = Keyring::new(OLD, &[]).unwrap();
        assert_eq!(rp.delivery_of(&other, &a), None);
        // After a rotation the old key still reads the mail in flight.
        let rotated = Keyring::new(b"0123456789abcdef0123456789abcdef-next", &[KEY]).unwrap();
        assert_eq!(rp.delivery_of(&rotated, &a), Some(4711));
    }

    #[test]
    fn templates_need_one_token_in_the_local_part() {
        for bad in [
            "bounces@example.com",
            "bounces+{token}+{token}@example.com",
            "bounces@{token}.example.com",
            "bounces+{token}",
            "bounces+{token}@",
            "b c+{token}@example.com",
        ] {
            assert!(ReturnPath::parse(bad).is_err(), "{bad}");
        }
        assert!(ReturnPath::parse("{token}@bounce.example.com").is_ok());
    }
}
