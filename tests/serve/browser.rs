//! The documented signup form (docs/embed/signup-form.html) in headless
//! Chromium, on a page of another origin, as a visitor uses it: typed
//! into, submitted, and landing on the site's thank-you page.

use axum::Router;
use axum::response::Html;
use axum::routing::get;
use fantoccini::Locator;
use fantoccini::key::Key;
use letterpress_testkit::{Browser, SmtpServer, WAIT, repo};

use crate::lp;

/// Serves the operator's static site on `listener` (a loopback port of
/// its own, so another origin than `serve`'s): `/` embeds the documented
/// form, posting to `subscribe_url`; `/thanks/` is the thank-you page.
fn static_site(listener: tokio::net::TcpListener, subscribe_url: &str) {
    let form = std::fs::read_to_string(repo().join("docs/embed/signup-form.html"))
        .expect("docs/embed/signup-form.html");
    let documented = r#"action="https://newsletter.example.com/subscribe""#;
    assert_eq!(form.matches(documented).count(), 1, "the documented action");
    let form = form.replace(documented, &format!(r#"action="{subscribe_url}""#));
    let home = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>Site</title></head><body><h1>Our newsletter</h1>{form}</body></html>"
    );
    let thanks = "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
                  <title>Thanks</title></head><body><h1>Thanks for signing up</h1></body></html>";
    let app = Router::new()
        .route("/", get(move || async move { Html(home) }))
        .route("/thanks/", get(move || async move { Html(thanks) }));
    tokio::spawn(async move { axum::serve(listener, app).await });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_form_subscribes_from_another_origin_in_chromium() {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let smtp = SmtpServer::start().await;
    let site_listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a port for the site");
    let site = format!("http://{}", site_listener.local_addr().unwrap());
    let thanks = format!("{site}/thanks/");
    let mut lp = lp().with_smtp(smtp.port);
    lp.set("LETTERPRESS_SERVER__SIGNUP_REDIRECT", &thanks);
    let served = lp.serve().await;
    assert_ne!(site, served.url(""), "two origins");
    static_site(site_listener, &served.url("/subscribe"));

    let b = &browser.client;
    b.goto(&format!("{site}/")).await.expect("the site's page");
    let email = b
        .find(Locator::Css(r#"input[name="email"]"#))
        .await
        .expect("the email field");
    let name = b
        .find(Locator::Css(r#"input[name="name"]"#))
        .await
        .expect("the name field");
    let honeypot = b
        .find(Locator::Css(r#"input[name="website"]"#))
        .await
        .expect("the honeypot");
    assert!(email.is_displayed().await.unwrap());
    assert!(
        !honeypot.is_displayed().await.unwrap(),
        "a person does not see the honeypot"
    );
    email.send_keys("browser@example.com").await.unwrap();
    name.send_keys("Chromium Reader").await.unwrap();
    // Tab from the last field a person fills skips the honeypot.
    name.send_keys(&char::from(Key::Tab).to_string())
        .await
        .unwrap();
    let focused = b
        .execute("return document.activeElement.outerHTML", Vec::new())
        .await
        .unwrap();
    assert!(
        focused.as_str().unwrap_or_default().starts_with("<button"),
        "Tab goes to the button: {focused}"
    );
    b.find(Locator::Css(r#"button[type="submit"]"#))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    b.wait()
        .at_most(WAIT)
        .for_url(&thanks.parse().unwrap())
        .await
        .expect("the browser lands on the thank-you page");
    let heading = b
        .find(Locator::Css("h1"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(heading, "Thanks for signing up");

    smtp.wait_until("the confirmation", |s| {
        s.copies().contains_key("browser@example.com")
    })
    .await;
    let subscriber = lp
        .subscribers()
        .await
        .into_iter()
        .find(|s| s["email"] == "browser@example.com")
        .expect("the visitor is on the list");
    assert_eq!(subscriber["status"], "pending");
    assert_eq!(subscriber["name"], "Chromium Reader");
    browser.close().await;
    served.stop_ok().await;
}
