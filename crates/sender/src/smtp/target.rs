//! Where to connect and how: `delivery.smtp_url` read into a [`Target`].

use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject as _;

/// How the connection is secured (`delivery.smtp_url`). The certificate
/// is verified in every mode, against the public roots and the CA of
/// `delivery.tls_ca_file`.
#[derive(Clone)]
pub enum Security {
    /// `smtp://host`, the URL saying nothing of TLS: as `Opportunistic`,
    /// except that a relay on a loopback address whose certificate does
    /// not verify (a default self-signed one) is used in plain text, which
    /// never leaves the machine.
    Unspecified(TlsParameters),
    /// `smtp://host?tls=opportunistic`: STARTTLS when the server offers
    /// it, plain text otherwise (and then no AUTH, unless the server is on
    /// a loopback address).
    Opportunistic(TlsParameters),
    /// `smtp://host?tls=required`: STARTTLS or fail.
    Required(TlsParameters),
    /// `smtps://host`: TLS from the first byte.
    Wrapper(TlsParameters),
}

/// Why `delivery.smtp_url` cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    /// It is not a URL.
    #[error(transparent)]
    Url(#[from] url::ParseError),
    /// It names no host.
    #[error("no host")]
    NoHost,
    /// TLS cannot be set up for the host name.
    #[error("no TLS for this host: {0}")]
    Tls(lettre::transport::smtp::Error),
    /// The CA file (`delivery.tls_ca_file`) holds no usable certificate.
    #[error("{0}")]
    Ca(String),
    /// A scheme or `tls=` value this client does not know.
    #[error("unknown scheme {scheme:?} or tls={tls:?}")]
    Unknown {
        /// The URL's scheme.
        scheme: String,
        /// Its `tls` query value.
        tls: Option<String>,
    },
}

/// Certificates of a private CA to trust besides the public roots
/// (`delivery.tls_ca_file`), read from PEM.
#[derive(Clone, Default)]
pub struct TrustedCa {
    roots: Vec<Certificate>,
}

impl TrustedCa {
    /// Reads every `CERTIFICATE` block of `pem`; other blocks (a key left
    /// in the same file) are ignored. A file with no certificate, or one
    /// that does not parse, is an error rather than an empty trust list.
    pub fn from_pem(pem: &[u8]) -> Result<Self, TargetError> {
        let mut roots = Vec::new();
        for der in CertificateDer::pem_slice_iter(pem) {
            let der = der.map_err(|e| TargetError::Ca(format!("not PEM: {e}")))?;
            let cert = Certificate::from_der(der.to_vec())
                .map_err(|e| TargetError::Ca(format!("not a certificate: {e}")))?;
            roots.push(cert);
        }
        if roots.is_empty() {
            return Err(TargetError::Ca(
                "no certificate in it (expected one or more \"-----BEGIN CERTIFICATE-----\" blocks)"
                    .into(),
            ));
        }
        // rustls parses each root only when the trust store is built: build
        // one now so that a bad certificate is reported here, not at the
        // first connection.
        Self::params(&roots, "localhost")
            .map_err(|e| TargetError::Ca(format!("not a usable CA certificate: {e}")))?;
        Ok(Self { roots })
    }

    /// How many certificates it holds.
    pub fn len(&self) -> usize {
        self.roots.len()
    }

    /// Whether it holds none (no `delivery.tls_ca_file`).
    pub fn is_empty(&self) -> bool {
        self.roots.is_empty()
    }

    fn params(
        roots: &[Certificate],
        host: &str,
    ) -> Result<TlsParameters, lettre::transport::smtp::Error> {
        let mut builder = TlsParameters::builder(host.to_string());
        for root in roots {
            builder = builder.add_root_certificate(root.clone());
        }
        builder.build()
    }
}

/// Where and how to connect, parsed from `delivery.smtp_url` the way
/// lettre's `from_url` reads it.
pub struct Target {
    /// The host name or address, without brackets.
    pub host: String,
    /// The port (the scheme's default when the URL names none).
    pub port: u16,
    /// How the connection is secured.
    pub security: Security,
    /// The name given in EHLO.
    pub hello: ClientId,
    /// AUTH user and password, when the URL names a user and a password is known.
    pub credentials: Option<Credentials>,
}

impl Target {
    /// Reads `url` (already accepted by lettre's `from_url`, so only the
    /// forms it knows arrive here); `password` overrides the URL's; `ca`
    /// is trusted besides the public roots.
    pub fn from_url(
        url: &str,
        password: Option<&str>,
        ca: &TrustedCa,
    ) -> Result<Self, TargetError> {
        let parsed = url::Url::parse(url)?;
        let host = parsed
            .host_str()
            .ok_or(TargetError::NoHost)?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let tls = parsed
            .query_pairs()
            .find(|(k, _)| k == "tls")
            .map(|(_, v)| v.into_owned());
        let params = || TrustedCa::params(&ca.roots, &host).map_err(TargetError::Tls);
        let (security, default_port) = match (parsed.scheme(), tls.as_deref()) {
            // A URL that says nothing still takes STARTTLS when it is
            // offered: plain text only where the server has no TLS.
            ("smtp", None) => (Security::Unspecified(params()?), 25),
            ("smtp", Some("required")) => (Security::Required(params()?), 587),
            ("smtp", Some("opportunistic")) => (Security::Opportunistic(params()?), 587),
            ("smtps", _) => (Security::Wrapper(params()?), 465),
            (scheme, tls) => {
                return Err(TargetError::Unknown {
                    scheme: scheme.to_string(),
                    tls: tls.map(str::to_string),
                });
            }
        };
        let hello = match parsed.path().trim_matches('/') {
            "" => ClientId::default(),
            name => ClientId::Domain(name.to_string()),
        };
        let user = percent_decode(parsed.username());
        let password = password
            .map(str::to_string)
            .or_else(|| parsed.password().map(percent_decode));
        let credentials = match (user.is_empty(), password) {
            (false, Some(p)) => Some(Credentials::new(user, p)),
            _ => None,
        };
        Ok(Self {
            port: parsed.port().unwrap_or(default_port),
            host,
            security,
            hello,
            credentials,
        })
    }
}

fn percent_decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={}", s.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}
