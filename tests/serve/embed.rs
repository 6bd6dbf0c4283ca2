//! The signup embed as another site uses it (docs/embed.md): a form post
//! from another origin sent on with a 303, CORS for the JSON form from
//! `server.allowed_origins` only, the honeypot, and the three documented
//! embeds (HTML, Zola shortcode, Hugo partial) agreeing on their fields.

use letterpress_server::HONEYPOT_FIELD;
use letterpress_testkit::{NEWSLETTER, PUBLIC_URL, SmtpServer, client, repo};
use reqwest::header::{
    ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS, ACCESS_CONTROL_ALLOW_ORIGIN,
    ACCESS_CONTROL_REQUEST_HEADERS, ACCESS_CONTROL_REQUEST_METHOD, LOCATION, ORIGIN,
};
use reqwest::{Method, StatusCode};

use crate::lp;

const SITE: &str = "https://site.example";
const THANKS: &str = "https://site.example/newsletter/thanks/";

/// A form posted from the operator's site lands on its thank-you page
/// (`server.signup_redirect`), and without one on letterpress's own; a
/// bad address is not sent on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_form_from_another_site_is_sent_to_its_thank_you_page() {
    let mut lp = lp();
    lp.set("LETTERPRESS_SERVER__SIGNUP_REDIRECT", THANKS);
    let served = lp.serve().await;
    let http = client();
    let post = |email: &str| {
        http.post(served.url("/subscribe"))
            .header(ORIGIN, SITE)
            .form(&[("email", email), ("name", "Site Reader")])
            .send()
    };
    let r = post("site@example.com").await.unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()[LOCATION], THANKS);
    assert_eq!(lp.status_of("site@example.com").await.unwrap(), "pending");
    let r = post("not-an-address").await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.headers().get(LOCATION).is_none());
    assert!(r.text().await.unwrap().contains("Invalid address"));
    served.stop_ok().await;

    // An installation without a redirect: letterpress's own page.
    let mut bare = crate::lp();
    bare.set("LETTERPRESS_SERVER__SIGNUP_PER_MINUTE", "10");
    let served = bare.serve().await;
    let r = http
        .post(served.url("/subscribe"))
        .header(ORIGIN, SITE)
        .form(&[("email", "own@example.com")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        r.headers()[LOCATION].to_str().unwrap(),
        format!("{PUBLIC_URL}/subscribe/thanks")
    );
    let page = http
        .get(served.url("/subscribe/thanks"))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let page = page.text().await.unwrap();
    assert!(
        page.contains("Check your inbox") && page.contains(NEWSLETTER),
        "{page}"
    );
    served.stop_ok().await;
}

/// `server.signup_redirect` and `server.allowed_origins` that are not what
/// they must be stop `serve` with the key named.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_embed_settings_are_refused_naming_the_key() {
    for (var, value, key) in [
        (
            "LETTERPRESS_SERVER__SIGNUP_REDIRECT",
            "/thanks/",
            "server.signup_redirect",
        ),
        (
            "LETTERPRESS_SERVER__ALLOWED_ORIGINS",
            "[\"https://site.example/newsletter/\"]",
            "server.allowed_origins",
        ),
        (
            "LETTERPRESS_SERVER__ALLOWED_ORIGINS",
            "[\"*\"]",
            "server.allowed_origins",
        ),
    ] {
        let mut lp = lp();
        lp.set(var, value);
        let out = lp.run(&["serve"]).await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{var}={value}: {stderr}");
        assert!(
            stderr.contains(key) && !stderr.contains("listening"),
            "{var}={value}: {stderr}"
        );
    }
}

/// The JSON form answers CORS preflights with an
/// `Access-Control-Allow-Origin` for the allowed origins only; the post
/// itself carries it back to them and to nobody else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_allows_the_json_form_from_allowed_origins_only() {
    let mut lp = lp();
    lp.set(
        "LETTERPRESS_SERVER__ALLOWED_ORIGINS",
        "[\"https://site.example\", \"http://localhost:1111/\"]",
    )
    .set("LETTERPRESS_SERVER__SIGNUP_PER_MINUTE", "100");
    let served = lp.serve().await;
    let http = client();
    let preflight = |origin: &str| {
        http.request(Method::OPTIONS, served.url("/subscribe"))
            .header(ORIGIN, origin)
            .header(ACCESS_CONTROL_REQUEST_METHOD, "POST")
            .header(ACCESS_CONTROL_REQUEST_HEADERS, "content-type")
            .send()
    };
    for origin in [SITE, "http://localhost:1111"] {
        let r = preflight(origin).await.unwrap();
        assert!(r.status().is_success(), "{origin}: {}", r.status());
        let h = r.headers();
        assert_eq!(h[ACCESS_CONTROL_ALLOW_ORIGIN], origin);
        assert!(
            h[ACCESS_CONTROL_ALLOW_METHODS]
                .to_str()
                .unwrap()
                .contains("POST")
        );
        assert!(
            h[ACCESS_CONTROL_ALLOW_HEADERS]
                .to_str()
                .unwrap()
                .to_ascii_lowercase()
                .contains("content-type")
        );
    }
    for origin in [
        "https://evil.example",
        "https://site.example.evil.example",
        "http://site.example",
        "null",
    ] {
        let r = preflight(origin).await.unwrap();
        assert!(
            r.headers().get(ACCESS_CONTROL_ALLOW_ORIGIN).is_none(),
            "{origin} is allowed: {:?}",
            r.headers()
        );
    }

    let post = |origin: &str, email: &str| {
        http.post(served.url("/subscribe"))
            .header(ORIGIN, origin)
            .json(&serde_json::json!({ "email": email }))
            .send()
    };
    let r = post(SITE, "cors@example.com").await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()[ACCESS_CONTROL_ALLOW_ORIGIN], SITE);
    assert_eq!(
        r.json::<serde_json::Value>().await.unwrap()["status"],
        "Check your inbox"
    );
    let r = post("https://evil.example", "evil@example.com")
        .await
        .unwrap();
    assert!(r.headers().get(ACCESS_CONTROL_ALLOW_ORIGIN).is_none());
    served.stop_ok().await;
}

/// A signup with the honeypot filled is answered exactly as a person's,
/// by form and by JSON, and neither stores the address nor mails it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_filled_honeypot_is_a_silent_no_op() {
    let smtp = SmtpServer::start().await;
    let mut lp = lp().with_smtp(smtp.port);
    lp.set("LETTERPRESS_SERVER__SIGNUP_REDIRECT", THANKS)
        .set("LETTERPRESS_SERVER__SIGNUP_PER_MINUTE", "100");
    let served = lp.serve().await;
    let http = client();
    let form = |email: &str, website: &str| {
        http.post(served.url("/subscribe"))
            .form(&[("email", email), ("name", "N"), (HONEYPOT_FIELD, website)])
            .send()
    };
    let json = |email: &str, website: &str| {
        http.post(served.url("/subscribe"))
            .json(&serde_json::json!({ "email": email, HONEYPOT_FIELD: website }))
            .send()
    };

    let person = form("person@example.com", "").await.unwrap();
    let bot = form("bot@example.com", "https://spam.example")
        .await
        .unwrap();
    for r in [&person, &bot] {
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
        assert_eq!(r.headers()[LOCATION], THANKS);
    }
    let person = json("json-person@example.com", "").await.unwrap();
    let bot = json("json-bot@example.com", "https://spam.example")
        .await
        .unwrap();
    assert_eq!(person.status(), StatusCode::OK);
    assert_eq!(bot.status(), StatusCode::OK);
    assert_eq!(
        person.json::<serde_json::Value>().await.unwrap(),
        bot.json::<serde_json::Value>().await.unwrap()
    );
    // A bot's bad address is refused as a person's would be.
    let r = form("not-an-address", "x").await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);

    // Confirmations go out in order: once the last person's is in, any
    // for the bots would be too.
    let r = form("marker@example.com", "").await.unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    smtp.wait_until("the marker's confirmation", |s| {
        s.copies().contains_key("marker@example.com")
    })
    .await;
    let mailed = smtp.copies();
    assert!(mailed.contains_key("person@example.com"));
    assert!(mailed.contains_key("json-person@example.com"));
    assert!(!mailed.contains_key("bot@example.com"), "{mailed:?}");
    assert!(!mailed.contains_key("json-bot@example.com"), "{mailed:?}");
    let statuses = lp.statuses().await;
    assert_eq!(
        statuses.keys().map(String::as_str).collect::<Vec<_>>(),
        [
            "json-person@example.com",
            "marker@example.com",
            "person@example.com"
        ],
        "the bots are not on the list"
    );
    served.stop_ok().await;
}

/// The `<form>…</form>` of an embed.
fn form_element(html: &str) -> &str {
    let start = html.find("<form").expect("a <form>");
    let end = html.find("</form>").expect("a </form>") + "</form>".len();
    &html[start..end]
}

/// The Hugo partial, rendered by a real Hugo site (Debian's `hugo`) with
/// `letterpressURL` set as docs/embed.md says, is the documented HTML
/// form byte for byte.
#[test]
fn the_hugo_partial_renders_the_documented_form() {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let Some(hugo) = std::env::split_paths(&path)
        .map(|d| d.join("hugo"))
        .find(|p| p.is_file())
    else {
        letterpress_testkit::require::missing(
            letterpress_testkit::Dependency::Hugo,
            "hugo is not installed",
        );
        return;
    };
    let site = tempfile::tempdir().expect("a site folder");
    let d = site.path();
    std::fs::create_dir_all(d.join("layouts/partials")).unwrap();
    std::fs::copy(
        repo().join("docs/embed/hugo/layouts/partials/newsletter-signup.html"),
        d.join("layouts/partials/newsletter-signup.html"),
    )
    .unwrap();
    std::fs::write(
        d.join("layouts/index.html"),
        "<html><body>{{ partial \"newsletter-signup.html\" . }}</body></html>\n",
    )
    .unwrap();
    std::fs::write(
        d.join("hugo.toml"),
        "baseURL = \"https://example.com/\"\ntitle = \"Site\"\n\
         [params]\nletterpressURL = \"https://newsletter.example.com/\"\n",
    )
    .unwrap();
    let out = std::process::Command::new(&hugo)
        .arg("--quiet")
        .current_dir(d)
        .output()
        .expect("run hugo");
    assert!(
        out.status.success(),
        "hugo: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rendered = std::fs::read_to_string(d.join("public/index.html")).expect("the page");
    let documented =
        std::fs::read_to_string(repo().join("docs/embed/signup-form.html")).expect("the form");
    assert_eq!(form_element(&rendered), form_element(&documented));
}

/// The documented form, the Zola shortcode and the Hugo partial are one
/// form: the same fields, the honeypot hidden the same way, no script.
#[test]
fn the_documented_embeds_have_the_same_fields() {
    let honeypot = format!(r#"name="{HONEYPOT_FIELD}""#);
    let must_have = [
        r#"method="post""#,
        r#"/subscribe""#,
        r#"type="email" name="email" required"#,
        r#"name="name""#,
        honeypot.as_str(),
        r#"tabindex="-1" autocomplete="off""#,
        r#"<div aria-hidden="true" style="position: absolute; left: -10000px;"#,
        r#"<button type="submit">"#,
    ];
    for file in [
        "docs/embed/signup-form.html",
        "docs/embed/zola/templates/shortcodes/newsletter_signup.html",
        "docs/embed/hugo/layouts/partials/newsletter-signup.html",
    ] {
        let text = std::fs::read_to_string(repo().join(file)).expect(file);
        for needle in must_have {
            assert!(text.contains(needle), "{file} lacks {needle}");
        }
        assert!(!text.contains("<script"), "{file} needs no JavaScript");
        assert_eq!(text.matches("<input").count(), 3, "{file}");
    }
}
