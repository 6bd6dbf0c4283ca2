//! URLs made safe to print: the one place a password is cut out of a
//! database or SMTP URL before it goes into a message or a log.

/// `url` with the password of its user information replaced by `***`.
///
/// A URL that parses is redacted exactly. One that does not (a typo in a
/// config file, a password with an unescaped `/` or `@`) is redacted
/// conservatively: everything between the user name and the last `@` goes,
/// so a malformed URL never prints its secret either.
pub fn redact_url(url: &str) -> String {
    if let Ok(mut parsed) = url::Url::parse(url)
        && parsed.has_authority()
    {
        if parsed.password().is_some() {
            // Setting a password on a URL with an authority cannot fail.
            let _ = parsed.set_password(Some("***"));
        }
        return parsed.to_string();
    }
    match unparsed_password(url) {
        Some((start, end)) => format!("{}***{}", &url[..start], &url[end..]),
        None => url.to_string(),
    }
}

/// Whether `url` carries a password, by the same reading as
/// [`redact_url`]: what it would cut out.
pub fn url_has_password(url: &str) -> bool {
    match url::Url::parse(url) {
        Ok(parsed) if parsed.has_authority() => parsed.password().is_some(),
        _ => unparsed_password(url).is_some(),
    }
}

/// Where the password of a URL that does not parse may be: from the first
/// `:` after the scheme's `://` to the last `@`, when the `:` comes first.
fn unparsed_password(url: &str) -> Option<(usize, usize)> {
    let scheme_end = url.find("://")? + 3;
    let rest = &url[scheme_end..];
    match (rest.find(':'), rest.rfind('@')) {
        (Some(colon), Some(at)) if colon < at => Some((scheme_end + colon + 1, scheme_end + at)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::{redact_url, url_has_password};

    #[test]
    fn passwords_never_print() {
        for (url, shown) in [
            (
                "postgres://bob:secret@db.example/lp",
                "postgres://bob:***@db.example/lp",
            ),
            (
                "smtp://news:s3cr%2Ft@mail.example:587?tls=required",
                "smtp://news:***@mail.example:587?tls=required",
            ),
            (
                "postgres://bob@db.example/lp",
                "postgres://bob@db.example/lp",
            ),
            (
                "sqlite://data/letterpress.db",
                "sqlite://data/letterpress.db",
            ),
            // Does not parse (a space in the host, an unescaped `/` and `@`
            // in the password): cut from the user name to the last `@`.
            (
                "postgres://bob:pa/ss@w@db example/lp",
                "postgres://bob:***@db example/lp",
            ),
            ("smtp://u:[bad@host:99999", "smtp://u:***@host:99999"),
            ("not a url", "not a url"),
        ] {
            assert_eq!(redact_url(url), shown, "{url}");
            assert_eq!(url_has_password(url), shown.contains("***"), "{url}");
            assert!(!redact_url(url).contains("secret") && !redact_url(url).contains("pa/ss"));
        }
    }
}
