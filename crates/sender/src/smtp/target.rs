//! Where to connect and how: `delivery.smtp_url` read into a [`Target`].

use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::TlsParameters;
use lettre::transport::smtp::extension::ClientId;

/// How the connection is secured (`delivery.smtp_url`).
#[derive(Clone)]
pub enum Security {
    /// `smtp://host`: plain text.
    Plain,
    /// `smtp://host?tls=opportunistic`: STARTTLS when offered.
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
    /// A scheme or `tls=` value this client does not know.
    #[error("unknown scheme {scheme:?} or tls={tls:?}")]
    Unknown {
        /// The URL's scheme.
        scheme: String,
        /// Its `tls` query value.
        tls: Option<String>,
    },
}

/// Where and how to connect, parsed from `delivery.smtp_url` the way
/// lettre's `from_url` reads it.
pub struct Target {
    pub host: String,
    pub port: u16,
    pub security: Security,
    pub hello: ClientId,
    pub credentials: Option<Credentials>,
}

impl Target {
    /// Reads `url` (already accepted by lettre's `from_url`, so only the
    /// forms it knows arrive here); `password` overrides the URL's.
    pub fn from_url(url: &str, password: Option<&str>) -> Result<Self, TargetError> {
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
        let params = || TlsParameters::new(host.clone()).map_err(TargetError::Tls);
        let (security, default_port) = match (parsed.scheme(), tls.as_deref()) {
            ("smtp", None) => (Security::Plain, 25),
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
