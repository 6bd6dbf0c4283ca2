//! What a signup form on another site (a static Zola or Hugo page) needs
//! of `/subscribe`: where a form signup lands (`server.signup_redirect`),
//! which sites' scripts may post JSON (`server.allowed_origins`, answered
//! by CORS), and the honeypot field that tells a bot from a person.
//!
//! A plain HTML form needs no CORS: a browser posts a form to any origin
//! and follows the 303 it gets back. Only a script's `fetch` with a JSON
//! body is asked about first (a preflight), and only the origins listed
//! are given an `Access-Control-Allow-Origin`.

use std::time::Duration;

use axum::http::{HeaderValue, Method, header};
use tower_http::cors::{AllowOrigin, CorsLayer};
use url::Url;

/// The form field bots fill and people never see: the documented form
/// hides it with CSS, takes it out of the tab order (`tabindex="-1"`) and
/// from autofill (`autocomplete="off"`). A signup that fills it is
/// answered like any other and does nothing.
pub const HONEYPOT_FIELD: &str = "website";

/// The sites whose scripts may post JSON to `/subscribe`
/// (`server.allowed_origins`), as browsers write an `Origin`:
/// `https://example.com`, `http://localhost:1313`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowedOrigins(Vec<String>);

/// An entry of `server.allowed_origins` that is not an origin.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{entry:?} is not an origin ({why}): write scheme://host[:port], e.g. https://example.com")]
pub struct BadOrigin {
    /// The entry as written.
    pub entry: String,
    /// What is wrong with it.
    pub why: &'static str,
}

impl AllowedOrigins {
    /// Parses `https://example.com`-style origins. A trailing `/` is
    /// forgiven (browsers never send one, so it could only stop a match);
    /// a path, query, user or `*` is refused.
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<Self, BadOrigin> {
        entries
            .iter()
            .map(|e| parse_origin(e.as_ref().trim()))
            .collect::<Result<Vec<_>, _>>()
            .map(Self)
    }

    /// The origins, as browsers write them.
    pub fn as_slice(&self) -> &[String] {
        &self.0
    }

    /// The CORS answer of `/subscribe`: preflights and posts from these
    /// origins only get `Access-Control-Allow-Origin`.
    pub(crate) fn cors(&self) -> CorsLayer {
        let origins: Vec<HeaderValue> = self
            .0
            .iter()
            .filter_map(|o| HeaderValue::from_str(o).ok())
            .collect();
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(origins))
            .allow_methods([Method::POST])
            .allow_headers([header::CONTENT_TYPE, header::ACCEPT])
            .max_age(Duration::from_secs(24 * 3600))
    }
}

fn parse_origin(entry: &str) -> Result<String, BadOrigin> {
    let bad = |why| BadOrigin {
        entry: entry.to_string(),
        why,
    };
    if entry == "*" {
        return Err(bad("any origin is not allowed; list the sites"));
    }
    let url = Url::parse(entry).map_err(|_| bad("not a URL"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(bad("the scheme must be http or https"));
    }
    if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
        return Err(bad("an origin has no path, query or fragment"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad("an origin has no user name or password"));
    }
    if url.host_str().is_none() {
        return Err(bad("no host"));
    }
    Ok(url.origin().ascii_serialization())
}

/// Where a form signup is sent with a 303 (`server.signup_redirect`): the
/// site's own thank-you page, an absolute http(s) URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignupRedirect(String);

/// A `server.signup_redirect` that is not an absolute http(s) URL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not an absolute http(s) URL, e.g. https://example.com/newsletter/thanks/")]
pub struct BadRedirect(pub String);

impl SignupRedirect {
    /// Parses an absolute `http://` or `https://` URL.
    pub fn parse(url: &str) -> Result<Self, BadRedirect> {
        match Url::parse(url.trim()) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => {
                Ok(Self(u.to_string()))
            }
            _ => Err(BadRedirect(url.to_string())),
        }
    }

    /// The URL.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_scheme_host_and_port() {
        // (entry, the origin as browsers send it, or None: refused)
        let table = [
            ("https://example.com", Some("https://example.com")),
            ("https://example.com/", Some("https://example.com")),
            ("HTTPS://Example.COM", Some("https://example.com")),
            ("http://localhost:1313", Some("http://localhost:1313")),
            ("https://example.com:443", Some("https://example.com")),
            (" https://example.com ", Some("https://example.com")),
            ("https://example.com/newsletter/", None),
            ("https://example.com?x=1", None),
            ("https://user@example.com", None),
            ("example.com", None),
            ("ftp://example.com", None),
            ("*", None),
            ("", None),
        ];
        for (entry, want) in table {
            let got = AllowedOrigins::parse(&[entry]).ok();
            assert_eq!(
                got.as_ref().map(|o| o.as_slice()[0].as_str()),
                want,
                "{entry:?}"
            );
        }
        let e = AllowedOrigins::parse(&["https://example.com/path"]).unwrap_err();
        assert!(e.to_string().contains("no path"), "{e}");
    }

    #[test]
    fn a_redirect_is_an_absolute_web_address() {
        assert_eq!(
            SignupRedirect::parse("https://example.com/thanks/")
                .unwrap()
                .as_str(),
            "https://example.com/thanks/"
        );
        for bad in [
            "/thanks/",
            "thanks",
            "javascript:alert(1)",
            "mailto:a@b.c",
            "",
        ] {
            assert!(SignupRedirect::parse(bad).is_err(), "{bad:?}");
        }
    }
}
