//! HMAC signatures for everything letterpress hands out and takes back.
//!
//! * [`Keyring::token`] / [`Keyring::verify`]: short URL-safe tokens that name
//!   a subscriber for one purpose (unsubscribe, confirm a signup). A token is
//!   verified without a database lookup, cannot be turned into another
//!   subscriber's token, and cannot be reused for another purpose. It also
//!   carries a *binding*, a random value the store keeps with the
//!   subscriber's row (see [`Binding`]): the caller checks it against the
//!   row, so a token never acts on a row it was not made for, even one that
//!   has the same id after an id was reused or a backup restored.
//! * [`ReturnPath`]: a signed envelope sender per delivery (VERP), read
//!   back from a bounce into the delivery's id.
//! * [`WebhookKey`]: the `X-Letterpress-Signature: sha256=<hex>` header over
//!   `TIMESTAMP.BODY`, with the timestamp in `X-Letterpress-Timestamp`, so a
//!   captured request is refused once [`MAX_WEBHOOK_SKEW`] has passed.
//!
//! Every comparison of a MAC is constant-time (`hmac`'s `verify_slice` and
//! `verify_truncated_left`), so response timing tells an attacker nothing
//! about how close a forgery came.

mod return_path;

pub use return_path::{ReturnPath, ReturnPathError};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Bytes of the HMAC kept in a token. 128 bits is far beyond what an online
/// guesser can try, and keeps unsubscribe URLs short.
const TAG_LEN: usize = 16;
/// Version 1 (before bindings): purpose (1) + subscriber id (8) + expiry (8).
const V1_PAYLOAD_LEN: usize = 17;
/// Version 2: version (1) + purpose (1) + subscriber id (8) + binding (8)
/// + expiry in unix seconds (8, 0 = never).
const V2_PAYLOAD_LEN: usize = 26;
/// The first byte of a version 2 payload (a version 1 payload starts with
/// its purpose, 1 or 2, and is shorter anyway).
const V2: u8 = 0x82;

/// The smallest secret accepted for tokens or webhooks.
pub const MIN_SECRET_LEN: usize = 32;

/// What a token allows. The purpose is inside the signed payload, so an
/// unsubscribe token cannot confirm a signup and the other way round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// One-click unsubscribe (`/u/{token}`); never expires, because mail
    /// sits in inboxes for years and RFC 8058 expects the link to keep working.
    Unsubscribe = 1,
    /// Double opt-in confirmation (`/confirm/{token}`).
    Confirm = 2,
    /// The envelope sender of one delivery (VERP, `delivery.return_path`),
    /// naming the delivery: see [`ReturnPath`].
    ReturnPath = 3,
}

/// What a token is bound to besides the subscriber's id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Binding {
    /// The value the store keeps with the row: for an unsubscribe token the
    /// subscriber's token salt, for a confirmation token the nonce of the
    /// signup it confirms. The token acts only if the row still holds it.
    Row(u64),
    /// A token made before bindings existed (version 1). It names only an
    /// id; the store honours it only for rows that existed before bindings
    /// did, so that links already in inboxes keep working for the people
    /// they were sent to, and for nobody else.
    Legacy,
}

/// A verified token's content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Claims {
    /// What the token is for.
    pub purpose: Purpose,
    /// The subscriber it names.
    pub subscriber_id: i64,
    /// What it must match in the subscriber's row.
    pub binding: Binding,
}

/// Which configured secret a [`KeyError`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyRole {
    /// The current token secret (`server.secret`).
    Current,
    /// The n-th retired secret (`server.previous_secrets`, from 1).
    Previous(usize),
    /// The webhook secret (`server.webhook_secret`).
    Webhook,
}

/// Why a secret cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// Short secrets make forgeries practical.
    #[error("{role} is {len} bytes; at least {MIN_SECRET_LEN} are needed")]
    TooShort {
        /// Which secret.
        role: KeyRole,
        /// Its length in bytes.
        len: usize,
    },
}

impl std::fmt::Display for KeyRole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeyRole::Current => f.write_str("server.secret"),
            KeyRole::Previous(n) => write!(f, "server.previous_secrets entry {n}"),
            KeyRole::Webhook => f.write_str("server.webhook_secret"),
        }
    }
}

fn check_len(role: KeyRole, key: &[u8]) -> Result<(), KeyError> {
    if key.len() < MIN_SECRET_LEN {
        return Err(KeyError::TooShort {
            role,
            len: key.len(),
        });
    }
    Ok(())
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
        check_len(KeyRole::Current, current)?;
        for (i, k) in previous.iter().enumerate() {
            check_len(KeyRole::Previous(i + 1), k)?;
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

    /// A token for `purpose` naming `subscriber_id` and bound to `binding`
    /// (see [`Binding::Row`]), valid until `expires_unix` (seconds since
    /// the epoch), or forever when `None`.
    pub fn token(
        &self,
        purpose: Purpose,
        subscriber_id: i64,
        binding: u64,
        expires_unix: Option<u64>,
    ) -> String {
        let mut buf = [0u8; V2_PAYLOAD_LEN + TAG_LEN];
        buf[0] = V2;
        buf[1] = purpose as u8;
        buf[2..10].copy_from_slice(&subscriber_id.to_be_bytes());
        buf[10..18].copy_from_slice(&binding.to_be_bytes());
        buf[18..26].copy_from_slice(&expires_unix.unwrap_or(0).to_be_bytes());
        let tag = mac(&self.current, &buf[..V2_PAYLOAD_LEN])
            .finalize()
            .into_bytes();
        buf[V2_PAYLOAD_LEN..].copy_from_slice(&tag[..TAG_LEN]);
        URL_SAFE_NO_PAD.encode(buf)
    }

    /// Checks a token for `purpose` at time `now_unix`. `None` for anything
    /// malformed, forged, expired, or made for another purpose: callers
    /// answer all of those the same way (404), so no detail leaks. The
    /// caller still has to check [`Claims::binding`] against the row.
    pub fn verify(&self, token: &str, purpose: Purpose, now_unix: u64) -> Option<Claims> {
        let mut buf = [0u8; V2_PAYLOAD_LEN + TAG_LEN + 3];
        let n = URL_SAFE_NO_PAD.decode_slice(token, &mut buf).ok()?;
        let payload_len = match n {
            _ if n == V2_PAYLOAD_LEN + TAG_LEN && buf[0] == V2 => V2_PAYLOAD_LEN,
            _ if n == V1_PAYLOAD_LEN + TAG_LEN => V1_PAYLOAD_LEN,
            _ => return None,
        };
        let (payload, tag) = buf[..n].split_at(payload_len);
        let signed_by_known_key = std::iter::once(&self.current)
            .chain(self.previous.iter())
            // `verify_truncated_left` compares in constant time.
            .any(|key| mac(key, payload).verify_truncated_left(tag).is_ok());
        if !signed_by_known_key {
            return None;
        }
        let u64_at = |i: usize| {
            payload
                .get(i..i + 8)?
                .try_into()
                .ok()
                .map(u64::from_be_bytes)
        };
        let (found_purpose, subscriber_id, binding, expires) = if payload_len == V2_PAYLOAD_LEN {
            (
                payload[1],
                u64_at(2)? as i64,
                Binding::Row(u64_at(10)?),
                u64_at(18)?,
            )
        } else {
            (payload[0], u64_at(1)? as i64, Binding::Legacy, u64_at(9)?)
        };
        if found_purpose != purpose as u8 || (expires != 0 && now_unix > expires) {
            return None;
        }
        Some(Claims {
            purpose,
            subscriber_id,
            binding,
        })
    }

    /// A version 1 token, as builds before bindings made them: only for
    /// tests that show such tokens keep working for their subscribers.
    #[doc(hidden)]
    pub fn legacy_token(
        &self,
        purpose: Purpose,
        subscriber_id: i64,
        expires_unix: Option<u64>,
    ) -> String {
        let mut buf = [0u8; V1_PAYLOAD_LEN + TAG_LEN];
        buf[0] = purpose as u8;
        buf[1..9].copy_from_slice(&subscriber_id.to_be_bytes());
        buf[9..17].copy_from_slice(&expires_unix.unwrap_or(0).to_be_bytes());
        let tag = mac(&self.current, &buf[..V1_PAYLOAD_LEN])
            .finalize()
            .into_bytes();
        buf[V1_PAYLOAD_LEN..].copy_from_slice(&tag[..TAG_LEN]);
        URL_SAFE_NO_PAD.encode(buf)
    }
}

fn mac(key: &[u8], data: &[u8]) -> HmacSha256 {
    // HMAC accepts keys of any length; `new_from_slice` cannot fail for it.
    let mut m = <HmacSha256 as KeyInit>::new_from_slice(key).expect("HMAC takes any key length");
    m.update(data);
    m
}

/// How far a webhook's timestamp may be from our clock, either way.
pub const MAX_WEBHOOK_SKEW: u64 = 300;

/// Why a webhook request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookRefusal {
    /// `X-Letterpress-Timestamp` is missing or not a Unix time.
    #[error("missing or malformed X-Letterpress-Timestamp")]
    Timestamp,
    /// The timestamp is more than [`MAX_WEBHOOK_SKEW`] seconds away.
    #[error("X-Letterpress-Timestamp is {0} s from now; at most {MAX_WEBHOOK_SKEW} s is accepted")]
    Stale(u64),
    /// The signature is missing, malformed or wrong.
    #[error("bad signature")]
    Signature,
}

/// The key that signs webhook bodies (`server.webhook_secret`).
#[derive(Clone)]
pub struct WebhookKey(Vec<u8>);

impl std::fmt::Debug for WebhookKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebhookKey(..)")
    }
}

impl WebhookKey {
    /// A key from the configured secret, at least [`MIN_SECRET_LEN`] bytes.
    pub fn new(secret: &[u8]) -> Result<Self, KeyError> {
        check_len(KeyRole::Webhook, secret)?;
        Ok(Self(secret.to_vec()))
    }

    /// `sha256=<hex>` of `TIMESTAMP.BODY`: what a sender puts in
    /// `X-Letterpress-Signature`.
    pub fn sign(&self, timestamp: i64, body: &[u8]) -> String {
        format!(
            "sha256={}",
            hex::encode(
                webhook_mac(&self.0, timestamp, body)
                    .finalize()
                    .into_bytes()
            )
        )
    }

    /// Checks a request: its timestamp header, body and signature header,
    /// at `now` (Unix seconds). Returns the timestamp it was signed at. The
    /// signature is checked in constant time; the timestamp first, since a
    /// stale request is refused whoever signed it.
    pub fn verify(
        &self,
        timestamp: &str,
        body: &[u8],
        signature: &str,
        now: i64,
    ) -> Result<i64, WebhookRefusal> {
        let ts: i64 = timestamp
            .trim()
            .parse()
            .map_err(|_| WebhookRefusal::Timestamp)?;
        let skew = now.abs_diff(ts);
        if skew > MAX_WEBHOOK_SKEW {
            return Err(WebhookRefusal::Stale(skew));
        }
        let sig = signature
            .trim()
            .strip_prefix("sha256=")
            .and_then(|h| hex::decode(h).ok())
            .ok_or(WebhookRefusal::Signature)?;
        webhook_mac(&self.0, ts, body)
            .verify_slice(&sig)
            .map_err(|_| WebhookRefusal::Signature)?;
        Ok(ts)
    }
}

fn webhook_mac(key: &[u8], timestamp: i64, body: &[u8]) -> HmacSha256 {
    let mut m = mac(key, timestamp.to_string().as_bytes());
    m.update(b".");
    m.update(body);
    m
}

/// Whether `given` is `expected` (a bearer token, a password), compared in
/// time that does not depend on where they differ: both are reduced to an
/// HMAC first, and the HMACs are compared in constant time.
pub fn same_secret(expected: &[u8], given: &[u8]) -> bool {
    let key = b"letterpress constant-time comparison";
    let given = mac(key, given).finalize().into_bytes();
    mac(key, expected).verify_slice(&given).is_ok()
}

/// [`WebhookKey::sign`] without making a key first (for senders and tests).
pub fn sign_webhook(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    format!(
        "sha256={}",
        hex::encode(webhook_mac(secret, timestamp, body).finalize().into_bytes())
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const K1: &[u8] = b"0123456789abcdef0123456789abcdef";
    const K2: &[u8] = b"fedcba9876543210fedcba9876543210";

    fn claims(id: i64, binding: Binding, purpose: Purpose) -> Option<Claims> {
        Some(Claims {
            purpose,
            subscriber_id: id,
            binding,
        })
    }

    #[test]
    fn a_token_names_its_subscriber_binding_and_purpose() {
        let ring = Keyring::new(K1, &[]).unwrap();
        let t = ring.token(Purpose::Unsubscribe, 42, 0xfeed, None);
        assert_eq!(
            ring.verify(&t, Purpose::Unsubscribe, 0),
            claims(42, Binding::Row(0xfeed), Purpose::Unsubscribe)
        );
        assert_eq!(ring.verify(&t, Purpose::Confirm, 0), None);
        assert_ne!(t, ring.token(Purpose::Unsubscribe, 43, 0xfeed, None));
        assert_ne!(t, ring.token(Purpose::Unsubscribe, 42, 0xbeef, None));
    }

    #[test]
    fn every_changed_byte_breaks_the_token() {
        let ring = Keyring::new(K1, &[]).unwrap();
        let t = ring.token(Purpose::Unsubscribe, 7, 99, None);
        let bytes = URL_SAFE_NO_PAD.decode(&t).unwrap();
        for i in 0..bytes.len() {
            let mut forged = bytes.clone();
            forged[i] ^= 0x01;
            let forged = URL_SAFE_NO_PAD.encode(forged);
            assert_eq!(
                ring.verify(&forged, Purpose::Unsubscribe, 0),
                None,
                "byte {i}"
            );
        }
    }

    #[test]
    fn forged_truncated_and_garbage_tokens_fail() {
        let ring = Keyring::new(K1, &[]).unwrap();
        let t = ring.token(Purpose::Unsubscribe, 7, 1, None);
        assert_eq!(
            ring.verify(&t[..t.len() - 1], Purpose::Unsubscribe, 0),
            None
        );
        assert_eq!(ring.verify("", Purpose::Unsubscribe, 0), None);
        assert_eq!(ring.verify("not a token!", Purpose::Unsubscribe, 0), None);
        let forged = Keyring::new(K2, &[])
            .unwrap()
            .token(Purpose::Unsubscribe, 7, 1, None);
        assert_eq!(ring.verify(&forged, Purpose::Unsubscribe, 0), None);
    }

    #[test]
    fn tokens_made_before_bindings_still_verify_as_legacy() {
        let ring = Keyring::new(K1, &[]).unwrap();
        let old = ring.legacy_token(Purpose::Unsubscribe, 9, None);
        assert_eq!(old.len(), 44, "the length links in inboxes have");
        assert_eq!(
            ring.verify(&old, Purpose::Unsubscribe, 0),
            claims(9, Binding::Legacy, Purpose::Unsubscribe)
        );
        assert_eq!(ring.verify(&old, Purpose::Confirm, 0), None);
        let confirm = ring.legacy_token(Purpose::Confirm, 9, Some(1000));
        assert!(ring.verify(&confirm, Purpose::Confirm, 1000).is_some());
        assert!(ring.verify(&confirm, Purpose::Confirm, 1001).is_none());
    }

    #[test]
    fn rotation_keeps_old_tokens_valid_and_signs_with_the_new_key() {
        let old = Keyring::new(K1, &[]).unwrap();
        let t_old = old.token(Purpose::Unsubscribe, 9, 5, None);
        let rotated = Keyring::new(K2, &[K1]).unwrap();
        assert_eq!(rotated.current_key(), K2);
        assert_eq!(rotated.previous_keys().collect::<Vec<_>>(), [K1]);
        assert!(rotated.verify(&t_old, Purpose::Unsubscribe, 0).is_some());
        let t_new = rotated.token(Purpose::Unsubscribe, 9, 5, None);
        assert!(old.verify(&t_new, Purpose::Unsubscribe, 0).is_none());
        // After the grace period the old key is dropped and its tokens stop working.
        let later = Keyring::new(K2, &[]).unwrap();
        assert!(later.verify(&t_old, Purpose::Unsubscribe, 0).is_none());
    }

    #[test]
    fn expiry_is_enforced() {
        let ring = Keyring::new(K1, &[]).unwrap();
        let t = ring.token(Purpose::Confirm, 1, 2, Some(1000));
        assert!(ring.verify(&t, Purpose::Confirm, 999).is_some());
        assert!(ring.verify(&t, Purpose::Confirm, 1001).is_none());
    }

    #[test]
    fn short_keys_are_refused_naming_the_key() {
        let e = Keyring::new(b"short", &[]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "server.secret is 5 bytes; at least 32 are needed"
        );
        let e = Keyring::new(K1, &[K2, b"tiny"]).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("server.previous_secrets entry 2 is 4 bytes"),
            "{e}"
        );
        let e = WebhookKey::new(b"0123456789").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("server.webhook_secret is 10 bytes"),
            "{e}"
        );
    }

    #[test]
    fn secrets_compare_equal_only_when_equal() {
        assert!(same_secret(b"s3cret-token", b"s3cret-token"));
        assert!(!same_secret(b"s3cret-token", b"s3cret-tokem"));
        assert!(!same_secret(b"s3cret-token", b"s3cret"));
        assert!(!same_secret(b"s3cret-token", b""));
    }

    #[test]
    fn webhook_signatures_cover_the_timestamp_and_expire() {
        let key = WebhookKey::new(K1).unwrap();
        let body = br#"{"email":"a@b.example"}"#;
        let now = 1_700_000_000;
        let sig = key.sign(now, body);
        assert_eq!(sig, sign_webhook(K1, now, body));
        let ts = now.to_string();
        assert_eq!(key.verify(&ts, body, &sig, now), Ok(now));
        assert_eq!(key.verify(&ts, body, &sig, now + 300), Ok(now));
        assert_eq!(key.verify(&ts, body, &sig, now - 300), Ok(now));
        assert_eq!(
            key.verify(&ts, body, &sig, now + 301),
            Err(WebhookRefusal::Stale(301))
        );
        // The timestamp is signed: moving it forward to look fresh breaks it.
        let later = (now + 200).to_string();
        assert_eq!(
            key.verify(&later, body, &sig, now + 200),
            Err(WebhookRefusal::Signature)
        );
        let other = br#"{"email":"c@b.example"}"#;
        assert_eq!(
            key.verify(&ts, other, &sig, now),
            Err(WebhookRefusal::Signature)
        );
        let wrong = WebhookKey::new(K2).unwrap().sign(now, body);
        assert_eq!(
            key.verify(&ts, body, &wrong, now),
            Err(WebhookRefusal::Signature)
        );
        for bad in ["", "sha256=zz", &sig[7..]] {
            assert_eq!(
                key.verify(&ts, body, bad, now),
                Err(WebhookRefusal::Signature),
                "{bad:?}"
            );
        }
        for bad in ["", "soon", "1.5"] {
            assert_eq!(
                key.verify(bad, body, &sig, now),
                Err(WebhookRefusal::Timestamp),
                "{bad:?}"
            );
        }
    }
}
