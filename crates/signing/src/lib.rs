//! HMAC signatures for everything letterpress hands out and takes back.
//!
//! * [`Keyring::token`] / [`Keyring::verify`]: short URL-safe tokens that name
//!   a subscriber for one purpose (unsubscribe, confirm a signup). A token is
//!   verified without a database lookup, cannot be turned into another
//!   subscriber's token, and cannot be reused for another purpose.
//! * [`verify_webhook`]: the `X-Letterpress-Signature: sha256=<hex>` header
//!   over a webhook's raw body.
//!
//! Every comparison of a MAC is constant-time (`hmac`'s `verify_slice` and
//! `verify_truncated_left`), so response timing tells an attacker nothing
//! about how close a forgery came.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Bytes of the HMAC kept in a token. 128 bits is far beyond what an online
/// guesser can try, and keeps unsubscribe URLs short.
const TAG_LEN: usize = 16;
/// purpose (1) + subscriber id (8) + expiry in unix seconds (8, 0 = never).
const PAYLOAD_LEN: usize = 17;

/// What a token allows. The purpose is inside the signed payload, so an
/// unsubscribe token cannot confirm a signup and the other way round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// One-click unsubscribe (`/u/{token}`); never expires, because mail
    /// sits in inboxes for years and RFC 8058 expects the link to keep working.
    Unsubscribe = 1,
    /// Double opt-in confirmation (`/confirm/{token}`).
    Confirm = 2,
}

/// A verified token's content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Claims {
    /// What the token is for.
    pub purpose: Purpose,
    /// The subscriber it names.
    pub subscriber_id: i64,
}

/// Why a secret cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// Short secrets make forgeries practical.
    #[error("secret is {0} bytes; at least 32 are needed")]
    TooShort(usize),
}

/// The current signing key and the retired keys that still verify.
///
/// Rotation: put the new secret first and keep the old one in `previous`
/// for as long as mail signed with it may still be clicked; tokens signed
/// with it keep verifying, new tokens use the new key.
#[derive(Clone)]
pub struct Keyring {
    current: Vec<u8>,
    previous: Vec<Vec<u8>>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        write!(f, "Keyring({} previous keys)", self.previous.len())
    }
}

impl Keyring {
    /// A keyring that signs with `current` and also accepts tokens signed
    /// with any of `previous`.
    pub fn new(current: &[u8], previous: &[&[u8]]) -> Result<Self, KeyError> {
        for k in std::iter::once(&current).chain(previous.iter()) {
            if k.len() < 32 {
                return Err(KeyError::TooShort(k.len()));
            }
        }
        Ok(Self {
            current: current.to_vec(),
            previous: previous.iter().map(|k| k.to_vec()).collect(),
        })
    }

    /// The current key, for other keyed hashes (e.g. forgotten addresses).
    pub fn current_key(&self) -> &[u8] {
        &self.current
    }

    /// The retired keys, in the order given to [`Keyring::new`], for keyed
    /// hashes made before a rotation: a forgotten address hashed with a
    /// retired key is recognised only while that key is still listed here.
    pub fn previous_keys(&self) -> impl ExactSizeIterator<Item = &[u8]> {
        self.previous.iter().map(Vec::as_slice)
    }

    /// A token for `purpose` and `subscriber_id`, valid until `expires_unix`
    /// (seconds since the epoch), or forever when `None`.
    pub fn token(&self, purpose: Purpose, subscriber_id: i64, expires_unix: Option<u64>) -> String {
        let mut buf = [0u8; PAYLOAD_LEN + TAG_LEN];
        buf[0] = purpose as u8;
        buf[1..9].copy_from_slice(&subscriber_id.to_be_bytes());
        buf[9..17].copy_from_slice(&expires_unix.unwrap_or(0).to_be_bytes());
        let tag = mac(&self.current, &buf[..PAYLOAD_LEN])
            .finalize()
            .into_bytes();
        buf[PAYLOAD_LEN..].copy_from_slice(&tag[..TAG_LEN]);
        URL_SAFE_NO_PAD.encode(buf)
    }

    /// Checks a token for `purpose` at time `now_unix`. `None` for anything
    /// malformed, forged, expired, or made for another purpose: callers
    /// answer all of those the same way (404), so no detail leaks.
    pub fn verify(&self, token: &str, purpose: Purpose, now_unix: u64) -> Option<Claims> {
        let mut buf = [0u8; PAYLOAD_LEN + TAG_LEN + 3];
        let n = URL_SAFE_NO_PAD.decode_slice(token, &mut buf).ok()?;
        if n != PAYLOAD_LEN + TAG_LEN {
            return None;
        }
        let (payload, tag) = buf[..n].split_at(PAYLOAD_LEN);
        let signed_by_known_key = std::iter::once(&self.current)
            .chain(self.previous.iter())
            // `verify_truncated_left` compares in constant time.
            .any(|key| mac(key, payload).verify_truncated_left(tag).is_ok());
        if !signed_by_known_key || payload[0] != purpose as u8 {
            return None;
        }
        let subscriber_id = i64::from_be_bytes(payload[1..9].try_into().ok()?);
        let expires = u64::from_be_bytes(payload[9..17].try_into().ok()?);
        if expires != 0 && now_unix > expires {
            return None;
        }
        Some(Claims {
            purpose,
            subscriber_id,
        })
    }
}

fn mac(key: &[u8], data: &[u8]) -> HmacSha256 {
    // HMAC accepts keys of any length; `new_from_slice` cannot fail for it.
    let mut m = <HmacSha256 as KeyInit>::new_from_slice(key).expect("HMAC takes any key length");
    m.update(data);
    m
}

/// `sha256=<hex>` for `body` under `secret`: what a webhook sender puts in
/// `X-Letterpress-Signature`.
pub fn sign_webhook(secret: &[u8], body: &[u8]) -> String {
    format!(
        "sha256={}",
        hex::encode(mac(secret, body).finalize().into_bytes())
    )
}

/// Whether `header` (the `X-Letterpress-Signature` value) is a valid
/// signature of `body` under `secret`. Constant-time in the signature.
pub fn verify_webhook(secret: &[u8], body: &[u8], header: &str) -> bool {
    let Some(hex_sig) = header.trim().strip_prefix("sha256=") else {
        return false;
    };
    let Ok(sig) = hex::decode(hex_sig) else {
        return false;
    };
    mac(secret, body).verify_slice(&sig).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const K1: &[u8] = b"0123456789abcdef0123456789abcdef";
    const K2: &[u8] = b"fedcba9876543210fedcba9876543210";

    #[test]
    fn token_round_trips_and_is_bound_to_subscriber_and_purpose() {
        let ring = Keyring::new(K1, &[]).unwrap();
        let t = ring.token(Purpose::Unsubscribe, 42, None);
        assert_eq!(
            ring.verify(&t, Purpose::Unsubscribe, 0),
            Some(Claims {
                purpose: Purpose::Unsubscribe,
                subscriber_id: 42
            })
        );
        assert_eq!(ring.verify(&t, Purpose::Confirm, 0), None);
        let other = ring.token(Purpose::Unsubscribe, 43, None);
        assert_ne!(t, other);
        // Swapping the id bytes of one token into another breaks the MAC.
        let mut a = URL_SAFE_NO_PAD.decode(&t).unwrap();
        let b = URL_SAFE_NO_PAD.decode(&other).unwrap();
        a[1..9].copy_from_slice(&b[1..9]);
        assert_eq!(
            ring.verify(&URL_SAFE_NO_PAD.encode(a), Purpose::Unsubscribe, 0),
            None
        );
    }

    #[test]
    fn forged_truncated_and_garbage_tokens_fail() {
        let ring = Keyring::new(K1, &[]).unwrap();
        let t = ring.token(Purpose::Unsubscribe, 7, None);
        assert_eq!(
            ring.verify(&t[..t.len() - 1], Purpose::Unsubscribe, 0),
            None
        );
        assert_eq!(ring.verify("", Purpose::Unsubscribe, 0), None);
        assert_eq!(ring.verify("not a token!", Purpose::Unsubscribe, 0), None);
        let forged = Keyring::new(K2, &[])
            .unwrap()
            .token(Purpose::Unsubscribe, 7, None);
        assert_eq!(ring.verify(&forged, Purpose::Unsubscribe, 0), None);
    }

    #[test]
    fn rotation_keeps_old_tokens_valid_and_signs_with_the_new_key() {
        let old = Keyring::new(K1, &[]).unwrap();
        let t_old = old.token(Purpose::Unsubscribe, 9, None);
        let rotated = Keyring::new(K2, &[K1]).unwrap();
        assert_eq!(rotated.current_key(), K2);
        assert_eq!(rotated.previous_keys().collect::<Vec<_>>(), [K1]);
        assert!(rotated.verify(&t_old, Purpose::Unsubscribe, 0).is_some());
        let t_new = rotated.token(Purpose::Unsubscribe, 9, None);
        assert!(old.verify(&t_new, Purpose::Unsubscribe, 0).is_none());
        // After the grace period the old key is dropped and its tokens stop working.
        let later = Keyring::new(K2, &[]).unwrap();
        assert!(later.verify(&t_old, Purpose::Unsubscribe, 0).is_none());
    }

    #[test]
    fn expiry_is_enforced() {
        let ring = Keyring::new(K1, &[]).unwrap();
        let t = ring.token(Purpose::Confirm, 1, Some(1000));
        assert!(ring.verify(&t, Purpose::Confirm, 999).is_some());
        assert!(ring.verify(&t, Purpose::Confirm, 1001).is_none());
    }

    #[test]
    fn short_keys_are_refused() {
        assert!(Keyring::new(b"short", &[]).is_err());
    }

    #[test]
    fn webhook_signatures() {
        let body = br#"{"email":"a@b.example"}"#;
        let sig = sign_webhook(K1, body);
        assert!(verify_webhook(K1, body, &sig));
        assert!(!verify_webhook(K1, br#"{"email":"c@b.example"}"#, &sig));
        assert!(!verify_webhook(K2, body, &sig));
        assert!(!verify_webhook(K1, body, ""));
        assert!(!verify_webhook(K1, body, "sha256=zz"));
        assert!(!verify_webhook(K1, body, &sig[7..]));
    }
}
