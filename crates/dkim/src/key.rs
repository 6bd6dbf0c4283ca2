//! Private keys: PEM in and out, generation, and the public key as DNS
//! publishes it.

use std::fmt;

use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der, PublicKeyX509Der};
use aws_lc_rs::error::KeyRejected;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair as _, RsaKeyPair};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::DkimError;

/// An RSA private key for `a=rsa-sha256`, 2048 to 8192 bits.
///
/// `Debug` shows the size only, never the key.
pub struct RsaKey {
    pub(crate) pair: RsaKeyPair,
}

/// An Ed25519 private key for `a=ed25519-sha256` (RFC 8463).
///
/// `Debug` shows nothing of the key.
pub struct Ed25519Key {
    pub(crate) pair: Ed25519KeyPair,
}

impl RsaKey {
    /// Reads an unencrypted RSA private key in PEM: PKCS#1
    /// (`-----BEGIN RSA PRIVATE KEY-----`, what `openssl genrsa` wrote for
    /// years) or PKCS#8 (`-----BEGIN PRIVATE KEY-----`, what
    /// [`RsaKey::to_pkcs8_pem`] and current OpenSSL write).
    ///
    /// Keys under 2048 bits are refused ([`DkimError::RsaTooSmall`]).
    pub fn from_pem(pem: &str) -> Result<Self, DkimError> {
        let (label, der) = pem_decode(pem)?;
        let (parsed, pkcs8) = match label {
            "RSA PRIVATE KEY" => (RsaKeyPair::from_der(&der), false),
            "PRIVATE KEY" => (RsaKeyPair::from_pkcs8(&der), true),
            found => return Err(wrong_label(found, RSA_LABELS)),
        };
        let pair = parsed.map_err(|e| rsa_rejected(&e, &der, pkcs8))?;
        Ok(Self { pair })
    }

    /// A new 2048-bit key (the size mailbox providers expect; larger keys
    /// sign several times slower and need TXT records split in strings).
    pub fn generate() -> Result<Self, DkimError> {
        let pair = RsaKeyPair::generate(KeySize::Rsa2048).map_err(|_| DkimError::KeyGeneration)?;
        Ok(Self { pair })
    }

    /// The key as unencrypted PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`),
    /// which [`RsaKey::from_pem`] and OpenSSL read.
    pub fn to_pkcs8_pem(&self) -> Result<String, DkimError> {
        let der: Pkcs8V1Der<'static> = AsDer::<Pkcs8V1Der<'static>>::as_der(&self.pair)
            .map_err(|_| DkimError::KeyGeneration)?;
        Ok(pem_encode("PRIVATE KEY", der.as_ref()))
    }

    /// The modulus size in bits.
    pub fn bits(&self) -> usize {
        self.pair.public_modulus_len() * 8
    }

    /// The `p=` value of the key's DNS record: the base64 of the public key
    /// as a DER SubjectPublicKeyInfo (RFC 6376 §3.6.1).
    pub fn dns_public_key(&self) -> Result<String, DkimError> {
        let spki: PublicKeyX509Der<'static> = self
            .pair
            .public_key()
            .as_der()
            .map_err(|_| DkimError::KeyGeneration)?;
        Ok(STANDARD.encode(spki.as_ref()))
    }

    /// The whole TXT record value: `v=DKIM1; k=rsa; p=…`, published at
    /// `SELECTOR._domainkey.DOMAIN`.
    pub fn dns_record(&self) -> Result<String, DkimError> {
        Ok(format!("v=DKIM1; k=rsa; p={}", self.dns_public_key()?))
    }
}

impl Ed25519Key {
    /// Reads an unencrypted Ed25519 private key in PKCS#8 PEM
    /// (`-----BEGIN PRIVATE KEY-----`, as `openssl genpkey -algorithm
    /// ed25519` and [`Ed25519Key::to_pkcs8_pem`] write it).
    pub fn from_pem(pem: &str) -> Result<Self, DkimError> {
        let (label, der) = pem_decode(pem)?;
        if label != "PRIVATE KEY" {
            return Err(wrong_label(label, "\"PRIVATE KEY\" (PKCS#8)"));
        }
        let pair = Ed25519KeyPair::from_pkcs8(&der).map_err(|e| match e.description_() {
            "WrongAlgorithm" => DkimError::WrongKeyType {
                expected: "Ed25519",
            },
            reason => DkimError::InvalidKey {
                kind: "Ed25519",
                reason: in_words(reason),
            },
        })?;
        Ok(Self { pair })
    }

    /// A new key.
    pub fn generate() -> Result<Self, DkimError> {
        let pair = Ed25519KeyPair::generate().map_err(|_| DkimError::KeyGeneration)?;
        Ok(Self { pair })
    }

    /// The key as unencrypted PKCS#8 v1 PEM (`-----BEGIN PRIVATE KEY-----`),
    /// the form OpenSSL writes and reads.
    pub fn to_pkcs8_pem(&self) -> Result<String, DkimError> {
        let der = self
            .pair
            .to_pkcs8v1()
            .map_err(|_| DkimError::KeyGeneration)?;
        Ok(pem_encode("PRIVATE KEY", der.as_ref()))
    }

    /// The `p=` value of the key's DNS record: the base64 of the raw
    /// 32-byte public key (RFC 8463 §4.2), not a SubjectPublicKeyInfo.
    pub fn dns_public_key(&self) -> String {
        STANDARD.encode(self.pair.public_key().as_ref())
    }

    /// The whole TXT record value: `v=DKIM1; k=ed25519; p=…`.
    pub fn dns_record(&self) -> String {
        format!("v=DKIM1; k=ed25519; p={}", self.dns_public_key())
    }
}

impl fmt::Debug for RsaKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RsaKey")
            .field("bits", &self.bits())
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for Ed25519Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ed25519Key").finish_non_exhaustive()
    }
}

const RSA_LABELS: &str = "\"RSA PRIVATE KEY\" (PKCS#1) or \"PRIVATE KEY\" (PKCS#8)";

fn wrong_label(found: &str, expected: &'static str) -> DkimError {
    if found.contains("ENCRYPTED") {
        DkimError::Encrypted
    } else {
        DkimError::PemLabel {
            found: found.to_string(),
            expected,
        }
    }
}

fn rsa_rejected(e: &KeyRejected, der: &[u8], pkcs8: bool) -> DkimError {
    match e.description_() {
        "TooSmall" => DkimError::RsaTooSmall {
            bits: rsa_modulus_bits(der, pkcs8),
        },
        "TooLarge" => DkimError::RsaTooLarge,
        "WrongAlgorithm" => DkimError::WrongKeyType { expected: "RSA" },
        reason => DkimError::InvalidKey {
            kind: "RSA",
            reason: in_words(reason),
        },
    }
}

/// aws-lc-rs's `KeyRejected` reasons, for an operator.
fn in_words(reason: &'static str) -> &'static str {
    match reason {
        "InconsistentComponents" => "its parts do not belong to one key",
        "InvalidComponent" => "one of its numbers is out of range",
        "InvalidEncoding" | "UnexpectedError" | "Unspecified" => {
            "the data inside the PEM block is not such a key (damaged, or another format)"
        }
        other => other,
    }
}

/// The first PEM block of `text`: its label and its decoded content.
fn pem_decode(text: &str) -> Result<(&str, Vec<u8>), DkimError> {
    const BEGIN: &str = "-----BEGIN ";
    let start = text.find(BEGIN).ok_or(DkimError::NotPem)? + BEGIN.len();
    let label_len = text[start..].find("-----").ok_or(DkimError::NotPem)?;
    let label = &text[start..start + label_len];
    let content_start = start + label_len + "-----".len();
    let end_line = format!("-----END {label}-----");
    let content_len = text[content_start..]
        .find(&end_line)
        .ok_or(DkimError::NotPem)?;
    let content = &text[content_start..content_start + content_len];
    // RFC 1421 headers (`Proc-Type: 4,ENCRYPTED`, `DEK-Info: …`) are what
    // `openssl genrsa -aes256` puts in a PKCS#1 block.
    if content.contains(':') {
        return Err(DkimError::Encrypted);
    }
    let b64: Vec<u8> = content
        .bytes()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    let der = STANDARD.decode(&b64).map_err(|_| DkimError::PemBase64)?;
    Ok((label, der))
}

fn pem_encode(label: &str, der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let mut out = String::with_capacity(b64.len() + b64.len() / 64 + 2 * label.len() + 40);
    out.push_str("-----BEGIN ");
    out.push_str(label);
    out.push_str("-----\n");
    // base64 is ASCII, so any byte offset is a char boundary.
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str("-----END ");
    out.push_str(label);
    out.push_str("-----\n");
    out
}

/// The modulus size of an RSA private key in DER, for the message that
/// refuses a small one: PKCS#1 is `SEQUENCE { INTEGER version, INTEGER n,
/// … }`; PKCS#8 wraps it as `SEQUENCE { INTEGER, SEQUENCE algorithm,
/// OCTET STRING pkcs1 }`.
fn rsa_modulus_bits(der: &[u8], pkcs8: bool) -> Option<usize> {
    let mut pkcs1 = der;
    if pkcs8 {
        let (_, outer, _) = der_item(der, 0x30)?;
        let (_, _, rest) = der_item(outer, 0x02)?;
        let (_, _, rest) = der_item(rest, 0x30)?;
        let (_, inner, _) = der_item(rest, 0x04)?;
        pkcs1 = inner;
    }
    let (_, seq, _) = der_item(pkcs1, 0x30)?;
    let (_, _, rest) = der_item(seq, 0x02)?;
    let (_, n, _) = der_item(rest, 0x02)?;
    let n = match n.iter().position(|&b| b != 0) {
        Some(i) => &n[i..],
        None => return Some(0),
    };
    Some(n.len() * 8 - n[0].leading_zeros() as usize)
}

/// One DER item of the expected tag: (tag, content, what follows).
fn der_item(input: &[u8], tag: u8) -> Option<(u8, &[u8], &[u8])> {
    let (&t, rest) = input.split_first()?;
    if t != tag {
        return None;
    }
    let (&first, mut rest) = rest.split_first()?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        rest = &rest[n..];
        len
    };
    if rest.len() < len {
        return None;
    }
    Some((t, &rest[..len], &rest[len..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rsa_round_trips_through_pkcs8_pem() {
        let key = RsaKey::generate().expect("generate");
        assert_eq!(key.bits(), 2048);
        let pem = key.to_pkcs8_pem().expect("export");
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"));
        assert!(pem.lines().all(|l| l.len() <= 64));
        let again = RsaKey::from_pem(&pem).expect("reload");
        assert_eq!(
            again.dns_public_key().expect("spki"),
            key.dns_public_key().expect("spki")
        );
        assert_eq!(
            rsa_modulus_bits(&pem_decode(&pem).expect("pem").1, true),
            Some(2048)
        );
        let record = key.dns_record().expect("record");
        assert!(
            record.starts_with("v=DKIM1; k=rsa; p=MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA")
        );
    }

    #[test]
    fn rsa_loads_from_pkcs1_pem() {
        // PKCS#8 wraps the PKCS#1 RSAPrivateKey in an OCTET STRING: take
        // it out and write it as `openssl genrsa -traditional` would.
        let key = RsaKey::generate().expect("generate");
        let (_, pkcs8) = pem_decode(&key.to_pkcs8_pem().expect("export")).expect("pem");
        let (_, outer, _) = der_item(&pkcs8, 0x30).expect("PrivateKeyInfo");
        let (_, _, rest) = der_item(outer, 0x02).expect("version");
        let (_, _, rest) = der_item(rest, 0x30).expect("algorithm");
        let (_, pkcs1, _) = der_item(rest, 0x04).expect("privateKey");
        let pem = pem_encode("RSA PRIVATE KEY", pkcs1);
        let again = RsaKey::from_pem(&pem).expect("PKCS#1");
        assert_eq!(again.bits(), 2048);
        assert_eq!(
            again.dns_public_key().expect("spki"),
            key.dns_public_key().expect("spki")
        );
        // CRLF line ends and text around the block, as files may have.
        let crlf = format!("a comment\r\n{}\r\n", pem.replace('\n', "\r\n"));
        assert!(RsaKey::from_pem(&crlf).is_ok());
    }

    #[test]
    fn ed25519_round_trips_through_pkcs8_pem() {
        let key = Ed25519Key::generate().expect("generate");
        let pem = key.to_pkcs8_pem().expect("export");
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"));
        let again = Ed25519Key::from_pem(&pem).expect("reload");
        assert_eq!(again.dns_public_key(), key.dns_public_key());
        // 32 raw bytes: 44 characters of base64.
        assert_eq!(key.dns_public_key().len(), 44);
        assert!(key.dns_record().starts_with("v=DKIM1; k=ed25519; p="));
    }

    #[test]
    fn openssl_ed25519_pem_loads() {
        // `openssl genpkey -algorithm ed25519` (RFC 8410 example key).
        let pem = "-----BEGIN PRIVATE KEY-----\n\
                   MC4CAQAwBQYDK2VwBCIEINTuctv5E1hK1bbY8fdp+K06/nwoy/HU++CXqI9EdVhC\n\
                   -----END PRIVATE KEY-----\n";
        let key = Ed25519Key::from_pem(pem).expect("RFC 8410 key");
        assert_eq!(
            key.dns_public_key(),
            "Gb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE="
        );
    }

    #[test]
    fn errors_say_what_is_wrong() {
        let ed = Ed25519Key::generate()
            .and_then(|k| k.to_pkcs8_pem())
            .expect("ed25519 pem");
        let rsa = RsaKey::generate()
            .and_then(|k| k.to_pkcs8_pem())
            .expect("rsa pem");
        assert!(matches!(RsaKey::from_pem("hello"), Err(DkimError::NotPem)));
        assert!(matches!(
            RsaKey::from_pem("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"),
            Err(DkimError::PemLabel { .. })
        ));
        assert!(matches!(
            RsaKey::from_pem("-----BEGIN PRIVATE KEY-----\n!!!!\n-----END PRIVATE KEY-----\n"),
            Err(DkimError::PemBase64)
        ));
        assert!(matches!(
            RsaKey::from_pem(
                "-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-256-CBC,00\n\nAAAA\n-----END RSA PRIVATE KEY-----\n"
            ),
            Err(DkimError::Encrypted)
        ));
        assert!(matches!(
            RsaKey::from_pem(
                "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n"
            ),
            Err(DkimError::Encrypted)
        ));
        let e = RsaKey::from_pem(&ed).expect_err("ed25519 is not RSA");
        assert!(
            matches!(
                e,
                DkimError::WrongKeyType { .. } | DkimError::InvalidKey { .. }
            ),
            "{e}"
        );
        let e = Ed25519Key::from_pem(&rsa).expect_err("RSA is not ed25519");
        assert!(
            matches!(
                e,
                DkimError::WrongKeyType { .. } | DkimError::InvalidKey { .. }
            ),
            "{e}"
        );
        let e = RsaKey::from_pem(
            "-----BEGIN RSA PRIVATE KEY-----\nMAA=\n-----END RSA PRIVATE KEY-----\n",
        )
        .expect_err("an empty sequence");
        assert!(
            matches!(e, DkimError::InvalidKey { kind: "RSA", .. }),
            "{e}"
        );
    }

    #[test]
    fn small_rsa_keys_are_refused_with_their_size() {
        // A 1024-bit PKCS#1 key (`openssl genrsa -traditional 1024`), made for
        // this test and used nowhere else.
        let e = RsaKey::from_pem(RSA_1024).expect_err("1024 bits");
        assert!(
            matches!(e, DkimError::RsaTooSmall { bits: Some(1024) }),
            "{e:?}"
        );
        assert!(e.to_string().contains("1024 bits"), "{e}");
    }

    const RSA_1024: &str = "-----BEGIN RSA PRIVATE KEY-----
MIICXAIBAAKBgQCzo+iQHEIadGAIWLQAYRZSh8iapJsXnhgJGtzJUg4dPHxY2qxY
EMJIQo42LYk27kQvdO69Yh9M2umzx+N2TmBZ1xI4ryqJXPKm5RkRugW8pUnmv12U
O1kmQTa0r1SkezUuLafxsQ5Ylu5Z7t/uVD4rxltBxpvP9BJznjLPiiBU9QIDAQAB
AoGAdIyrnpQ27yMCC2hBoN1ctj8SkAKr/S69OWsMRDHQpndP1fZKSvjUlD1aNxxk
IheEdaXQH19CH4MIjXPqyB8hsxGnvqO3yyDjb4VfK1wYqCYrMvxXgaJGI2xBtZro
21aleLd/T5XvTOZobOB6zkABHUBT2fMhp6jYNFWV2h6L4gECQQDf5eEqyT8HGRrU
stSHxu5RsigApJ7lrDfuroFGnW1gRf6bm1PWLmi30sJy6y6sgv4mi4mFWh+Z+3Sd
Y1ONJFCFAkEAzWWPj5yvepvYNX6nkwiwwovLB62m0Gca0B3vtWePWPd5YN9AC4dX
7EXo1JUlzCXt/SZOx0eYsASdJN+Sys7VsQJAWCb/F0Ry702AFdxu9yJotHurak1m
TlEXGH9WYMIczTnhu8xVHs/Y5P8zFeHo130fqXdo5rsMFCk/ybPQspJorQJAGHbm
WJazGAmEASsqzoqUczevYSS/38bIHM3UBWlmW5RucqlkuXrPcCcLinaRX/WMmUB8
1aOjfiOui/vNQjbMoQJBANtrZtoY5XLL5dj16hczMbpv8AxvSFoJ2D8IWDEpopjN
w5Idr9aHZTBuRcKFi9rhVjyQ7rYOjZBsnUEkCKAkHJI=
-----END RSA PRIVATE KEY-----
";
}
