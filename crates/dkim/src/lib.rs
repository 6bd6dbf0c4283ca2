//! DKIM signing (RFC 6376) for letterpress: `c=relaxed/relaxed`,
//! `a=rsa-sha256`, and optionally an `a=ed25519-sha256` co-signature
//! (RFC 8463).
//!
//! Everything that is the same for every message of an issue is prepared
//! once in a [`Signer`]: the parsed keys, the lower-cased names of the
//! headers to sign and the folded tag prefix
//! (`v=1; a=…; c=relaxed/relaxed; d=…; s=…;`). Per message there is one
//! pass over the body (relaxed canonicalisation straight into SHA-256),
//! the canonical headers, and one signature per key:
//!
//! ```
//! use std::time::{Duration, SystemTime};
//! use letterpress_dkim::{Ed25519Key, Signer};
//!
//! # fn main() -> Result<(), letterpress_dkim::DkimError> {
//! let key = Ed25519Key::generate()?; // an RsaKey works the same way
//! let signer = Signer::new("example.com", "lp2026", key, &["From", "To", "Subject"])?;
//! let message = b"From: news@example.com\r\nTo: a@example.net\r\nSubject: Hi\r\n\r\nHello\r\n";
//! let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
//! let header = signer.sign(message, now)?;
//! assert!(header.starts_with("DKIM-Signature: v=1; a=ed25519-sha256; c=relaxed/relaxed;"));
//! assert!(header.ends_with("\r\n"));
//! // The sender writes `header` and then `message` to the wire.
//! # Ok(()) }
//! ```
//!
//! Keys: [`RsaKey`] (PKCS#1 or PKCS#8 PEM) and [`Ed25519Key`] (PKCS#8 PEM)
//! load, generate, export as PKCS#8 PEM and give the `p=` value of their DNS
//! record. The cryptography is aws-lc-rs's (its SHA-256 and signatures):
//! RSA-2048 signs in about a quarter of a millisecond there, within a few
//! per cent of `openssl speed rsa2048` on the same machine.

#![warn(missing_docs)]

mod canon;
mod key;
mod sign;

pub use key::{Ed25519Key, RsaKey};
pub use sign::{Signer, SigningKey};

/// The name of the header field a [`Signer`] writes.
pub const HEADER_NAME: &str = "DKIM-Signature";

/// What went wrong loading a key, preparing a signer or signing a message.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DkimError {
    /// The key file has no `-----BEGIN …-----` / `-----END …-----` block.
    #[error("not a PEM file: no \"-----BEGIN ...-----\" and matching \"-----END ...-----\" lines")]
    NotPem,
    /// The text between the PEM lines is not base64.
    #[error("the PEM block is not valid base64")]
    PemBase64,
    /// A PEM block of another kind (a certificate, a public key, …).
    #[error("the PEM block is \"{found}\"; expected {expected}")]
    PemLabel {
        /// The label found after `BEGIN`.
        found: String,
        /// The labels that would do.
        expected: &'static str,
    },
    /// A password-protected key.
    #[error(
        "the key is encrypted; write it unencrypted (e.g. `openssl pkey -in KEY -out PLAIN.pem`) and keep that file private"
    )]
    Encrypted,
    /// A well-formed key of another algorithm (an Ed25519 key where an RSA
    /// key is wanted, or the other way round).
    #[error("not an {expected} key (the PKCS#8 file holds another algorithm)")]
    WrongKeyType {
        /// `RSA` or `Ed25519`.
        expected: &'static str,
    },
    /// RSA keys under 2048 bits are refused.
    ///
    /// RFC 8301 allows 1024 bits for verifiers, but mailbox providers
    /// treat such keys as weak and aws-lc-rs does not sign with them.
    #[error(
        "the RSA key has {} bits; DKIM signing needs at least 2048 (RFC 8301): generate a 2048-bit key",
        bits.map_or_else(|| "fewer than 2048".to_string(), |b| b.to_string())
    )]
    RsaTooSmall {
        /// The modulus size, when it could be read.
        bits: Option<usize>,
    },
    /// RSA keys over 8192 bits are refused (and useless in DNS).
    #[error("the RSA key has more than 8192 bits")]
    RsaTooLarge,
    /// The DER inside the PEM is not a key of the expected kind.
    #[error("not a valid {kind} private key: {reason}")]
    InvalidKey {
        /// `RSA` or `Ed25519`.
        kind: &'static str,
        /// What aws-lc-rs found wrong, in words.
        reason: &'static str,
    },
    /// The random generator or the key generation failed.
    #[error("key generation failed")]
    KeyGeneration,
    /// `d=` or `s=` is not a domain name (ASCII letters, digits, `-`,
    /// labels separated by dots).
    #[error(
        "{tag}={value:?} is not a domain name (ASCII letters, digits and '-' in dot-separated labels; IDNs as xn--)"
    )]
    InvalidName {
        /// `d` or `s`.
        tag: &'static str,
        /// The value given.
        value: String,
    },
    /// The list of headers to sign is unusable.
    #[error("signed headers: {0}")]
    HeaderList(String),
    /// Both signatures were given the same selector; a selector names one
    /// key in DNS, so each key needs its own.
    #[error("the Ed25519 key needs its own selector; {0:?} is already the RSA key's")]
    SameSelector(String),
    /// The message is not a header block and a body with CRLF line ends.
    #[error("cannot sign the message: {0}")]
    Malformed(&'static str),
    /// RFC 6376 §5.4: the From header must be signed, and it is missing.
    #[error("cannot sign the message: it has no From header")]
    MissingFrom,
    /// The signature primitive failed (not expected with a loaded key).
    #[error("the {0} signature failed")]
    Signing(&'static str),
}
