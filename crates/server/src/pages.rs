//! The few HTML pages the server shows. Small, no JavaScript, every
//! interpolated value escaped.

use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use html_escape::{encode_double_quoted_attribute as attr, encode_text as text};

/// A complete page: `title` and `body_html` (already escaped by the caller).
pub(crate) fn page(status: StatusCode, newsletter: &str, title: &str, body_html: &str) -> Response {
    let html = format!(
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex">
<meta name="color-scheme" content="light dark">
<title>{title} · {newsletter}</title>
<style>
  body {{ font: 17px/1.5 -apple-system, BlinkMacSystemFont, "Segoe UI", Roboto, Helvetica, Arial, sans-serif;
         margin: 0; padding: 0 16px; background: #f4f4f5; color: #18181b; }}
  main {{ max-width: 460px; margin: 12vh auto; background: #fff; border-radius: 12px; padding: 32px 28px;
         box-shadow: 0 1px 3px rgba(0,0,0,.08); }}
  .name {{ font-size: 14px; letter-spacing: .04em; text-transform: uppercase; color: #71717a; margin: 0 0 8px; }}
  h1 {{ font-size: 24px; line-height: 1.25; margin: 0 0 12px; }}
  p {{ margin: 0 0 16px; }}
  main > :last-child {{ margin-bottom: 0; }}
  strong {{ overflow-wrap: anywhere; }}
  button {{ font: inherit; font-weight: 600; background: #18181b; color: #fff; border: 0; border-radius: 8px;
           padding: 12px 20px; cursor: pointer; width: 100%; }}
  button:focus-visible {{ outline: 3px solid #a1a1aa; outline-offset: 2px; }}
  @media (prefers-color-scheme: dark) {{
    body {{ background: #18181b; color: #f4f4f5; }} main {{ background: #27272a; box-shadow: none; }}
    button {{ background: #f4f4f5; color: #18181b; }} .name {{ color: #a1a1aa; }}
  }}
</style>
</head>
<body>
<main>
<p class="name">{newsletter}</p>
<h1>{title}</h1>
{body_html}
</main>
</body>
</html>
"#,
        newsletter = text(newsletter),
        title = text(title),
    );
    (status, Html(html)).into_response()
}

/// A form with one button that POSTs back to the page's own URL: the
/// `action` attribute is left out, so the form works whatever path prefix
/// a reverse proxy puts in front of us.
pub(crate) fn button_form(hidden: Option<(&str, &str)>, label: &str) -> String {
    let hidden = hidden
        .map(|(n, v)| {
            format!(
                r#"<input type="hidden" name="{}" value="{}">"#,
                attr(n),
                attr(v)
            )
        })
        .unwrap_or_default();
    format!(
        r#"<form method="post">{hidden}<button type="submit">{}</button></form>"#,
        text(label)
    )
}

/// Escapes text for HTML.
pub(crate) fn esc(s: &str) -> String {
    text(s).into_owned()
}

/// `bob@example.com` -> `b**@example.com`: enough for the reader to
/// recognise their address, not enough for a forwarded link to leak it.
pub(crate) fn mask_email(email: &str) -> String {
    match email.split_once('@') {
        Some((local, domain)) => {
            let mut chars = local.chars();
            let first = chars.next().map(String::from).unwrap_or_default();
            let stars = "*".repeat(chars.count().clamp(1, 6));
            format!("{first}{stars}@{domain}")
        }
        None => "***".into(),
    }
}

/// 404 for anything that does not verify, always the same page.
pub(crate) fn not_found(newsletter: &str) -> Response {
    page(
        StatusCode::NOT_FOUND,
        newsletter,
        "Link not recognised",
        "<p>This link is not valid. If you copied it from an email, check that it is complete.</p>",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_addresses() {
        assert_eq!(mask_email("bob@example.com"), "b**@example.com");
        assert_eq!(mask_email("a@example.com"), "a*@example.com");
        assert_eq!(
            mask_email("verylongname@example.com"),
            "v******@example.com"
        );
    }
}
