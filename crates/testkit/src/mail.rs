//! Reading raw messages as the tests need them: a header, a link's token,
//! a single-part body decoded.

use crate::PUBLIC_URL;

/// A header of a raw message, unfolded; the first one of that name.
pub fn header(message: &str, name: &str) -> Option<String> {
    let head = message
        .split("\r\n\r\n")
        .next()
        .unwrap_or(message)
        .replace("\r\n ", " ")
        .replace("\r\n\t", " ")
        .replace("\n ", " ");
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
    })
}

/// The token of a `…{prefix}TOKEN` link (`prefix` e.g. `/confirm/`).
pub fn token_after(text: &str, prefix: &str) -> Option<String> {
    let start = text.find(prefix)? + prefix.len();
    let token: String = text[start..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
        .collect();
    (!token.is_empty()).then_some(token)
}

/// The unsubscribe token in a message's `List-Unsubscribe` header, which
/// must point at [`PUBLIC_URL`].
pub fn list_unsubscribe_token(message: &str) -> String {
    let h = header(message, "List-Unsubscribe").expect("List-Unsubscribe header");
    assert!(
        h.contains(&format!("<{PUBLIC_URL}/u/")),
        "List-Unsubscribe points at server.public_url: {h}"
    );
    token_after(&h, "/u/").expect("a token in List-Unsubscribe")
}

/// The decoded body of a single-part message (7bit, base64, or strict
/// quoted-printable: see [`crate::quoted_printable::decode`]).
pub fn text_body(message: &str) -> String {
    let (_, body) = message
        .split_once("\r\n\r\n")
        .or_else(|| message.split_once("\n\n"))
        .unwrap_or(("", message));
    let encoding = header(message, "Content-Transfer-Encoding")
        .unwrap_or_default()
        .to_ascii_lowercase();
    match encoding.as_str() {
        "base64" => {
            use base64::Engine;
            let compact: String = body.chars().filter(|c| !c.is_whitespace()).collect();
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(compact)
                .expect("base64 body");
            String::from_utf8_lossy(&bytes).into_owned()
        }
        "quoted-printable" => {
            let bytes = crate::quoted_printable::decode(body.as_bytes())
                .unwrap_or_else(|e| panic!("{e}\n--- message ---\n{message}"));
            String::from_utf8_lossy(&bytes).into_owned()
        }
        _ => body.to_string(),
    }
}
