//! `serve` behind Debian's nginx running the documented site file
//! (`docs/deploy/nginx.conf`), as `docs/deploy.md` sets it up: HTTPS in
//! front, `server.trusted_proxies` naming nginx. Visitors connect from
//! their own loopback addresses (127.0.0.2, 127.0.0.3), so the signup
//! limit can be seen to count each of them, not the proxy.

use std::net::IpAddr;

use letterpress_testkit::{Nginx, SmtpServer, header, repo, text_body, token_after};
use reqwest::StatusCode;
use reqwest::header::LOCATION;

use crate::lp;

/// The documented site with what only the test can know put in: its own
/// ports on loopback (the IPv6 listeners dropped: a test machine may have
/// no IPv6 loopback), the upstream `serve` under test, and the run's
/// certificate. Every directive it replaces must be found as often as the
/// documented file has it, so a change there that the test would miss
/// fails here instead.
fn documented_site(nginx: &Nginx, upstream: std::net::SocketAddr) -> String {
    let path = repo().join("docs/deploy/nginx.conf");
    let doc = std::fs::read_to_string(&path).expect("docs/deploy/nginx.conf");
    let mut replaced = Vec::new();
    let mut out = String::new();
    for line in doc.lines() {
        let directive = line.trim();
        let indent = &line[..line.len() - line.trim_start().len()];
        let new = match directive {
            "listen 80;" => Some(format!("listen 127.0.0.1:{};", nginx.http_port)),
            "listen 443 ssl http2;" => {
                Some(format!("listen 127.0.0.1:{} ssl http2;", nginx.https_port))
            }
            "listen [::]:80;" | "listen [::]:443 ssl http2;" => Some(String::new()),
            "server 127.0.0.1:8080;" => Some(format!("server {upstream};")),
            d if d.starts_with("ssl_certificate ") => {
                Some(format!("ssl_certificate {};", nginx.cert_path().display()))
            }
            d if d.starts_with("ssl_certificate_key ") => Some(format!(
                "ssl_certificate_key {};",
                nginx.key_path().display()
            )),
            _ => None,
        };
        match new {
            Some(n) => {
                replaced.push(directive.to_string());
                out.push_str(indent);
                out.push_str(&n);
            }
            None => out.push_str(line),
        }
        out.push('\n');
    }
    assert_eq!(
        replaced.len(),
        7,
        "docs/deploy/nginx.conf changed shape (the test replaces two listen lines per server, \
         the upstream and the certificate pair); replaced: {replaced:?}"
    );
    assert!(
        out.contains("proxy_set_header X-Forwarded-For $remote_addr;"),
        "the documented site sets X-Forwarded-For"
    );
    out
}

/// A signup, its confirmation and a one-click unsubscribe, all through
/// nginx over HTTPS; the per-visitor signup limit counts visitors by the
/// address nginx saw, whatever `X-Forwarded-For` they send themselves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signup_confirmation_and_one_click_unsubscribe_through_nginx() {
    let Some(mut nginx) = Nginx::prepare() else {
        return;
    };
    let smtp = SmtpServer::start().await;
    let mut lp = lp().with_smtp(smtp.port);
    lp.set("LETTERPRESS_SERVER__PUBLIC_URL", &nginx.https_url())
        .set("LETTERPRESS_SERVER__SIGNUP_PER_MINUTE", "2")
        .set("LETTERPRESS_SERVER__TRUSTED_PROXIES", "[\"127.0.0.1\"]");
    let served = lp.serve().await;
    nginx.start(&documented_site(&nginx, served.addr)).await;
    let site = nginx.https_url();
    let visitor_a = nginx.client(IpAddr::from([127, 0, 0, 2]));
    let visitor_b = nginx.client(IpAddr::from([127, 0, 0, 3]));

    // The documented site: plain HTTP is sent to HTTPS, and HTTPS reaches
    // letterpress with nginx's own header on top.
    let r = visitor_a
        .get(format!("{}/healthz", nginx.http_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::MOVED_PERMANENTLY);
    assert_eq!(
        r.headers()[LOCATION].to_str().unwrap(),
        format!("https://{}/healthz", Nginx::HOST),
        "to the HTTPS site (on 443, as nginx is told the world sees it)"
    );
    let r = visitor_a
        .get(format!("{site}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{}", nginx.error_log());
    assert!(r.headers().contains_key("strict-transport-security"));

    // Visitor A signs up, claiming to be someone else: the claim is
    // overwritten by nginx.
    let signup = |http: &reqwest::Client, email: &str, claim: &str| {
        http.post(format!("{site}/subscribe"))
            .header("X-Forwarded-For", claim)
            .form(&[("email", email), ("name", "Proxied Reader")])
            .send()
    };
    let r = signup(&visitor_a, "reader@example.com", "198.51.100.1")
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER, "signup");
    assert_eq!(
        r.headers()[LOCATION].to_str().unwrap(),
        format!("{site}/subscribe/thanks"),
        "to the thank-you page behind the proxy"
    );
    let r = visitor_a
        .get(format!("{site}/subscribe/thanks"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    smtp.wait_until("the confirmation", |s| {
        s.copies().contains_key("reader@example.com")
    })
    .await;
    let mail = smtp
        .received()
        .into_iter()
        .find(|m| m.rcpt_to.iter().any(|t| t == "reader@example.com"))
        .expect("the confirmation")
        .data;
    let body = text_body(&mail);
    assert!(
        body.contains(&format!("{site}/confirm/")),
        "the link points at the proxy: {body}"
    );
    let token = token_after(&body, "/confirm/").expect("a confirmation token");
    let confirm = format!("{site}/confirm/{token}");
    let r = visitor_a.get(&confirm).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(lp.status_of("reader@example.com").await.unwrap(), "pending");
    let r = visitor_a.post(&confirm).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.text().await.unwrap().contains("You are subscribed"));
    assert_eq!(lp.status_of("reader@example.com").await.unwrap(), "active");

    // Two signups a minute per visitor: A's third is refused however it
    // forges X-Forwarded-For, and B, behind the same proxy, is not A.
    let r = signup(&visitor_a, "a2@example.com", "198.51.100.2")
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER, "A's second");
    let r = signup(&visitor_a, "a3@example.com", "198.51.100.3, 127.0.0.1")
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS, "A's third");
    let r = signup(&visitor_b, "b1@example.com", "127.0.0.2")
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::SEE_OTHER,
        "B is counted apart from A and from the proxy"
    );
    assert_eq!(lp.status_of("a3@example.com").await, None);
    assert_eq!(lp.status_of("b1@example.com").await.unwrap(), "pending");

    // An issue, and its one-click unsubscribe (RFC 8058) through nginx.
    let issue = lp.write_issue("drafts", "proxied", "");
    lp.ok(&["send", issue.to_str().unwrap(), "--yes"]).await;
    let message = smtp
        .received()
        .into_iter()
        .find(|m| {
            m.rcpt_to.iter().any(|t| t == "reader@example.com")
                && header(&m.data, "List-Unsubscribe").is_some()
        })
        .expect("the issue reached the reader")
        .data;
    let list_unsubscribe = header(&message, "List-Unsubscribe").unwrap();
    assert!(
        list_unsubscribe.contains(&format!("<{site}/u/")),
        "{list_unsubscribe}"
    );
    let unsubscribe = format!(
        "{site}/u/{}",
        token_after(&list_unsubscribe, "/u/").expect("a token")
    );
    let r = visitor_b
        .post(&unsubscribe)
        .form(&[("List-Unsubscribe", "One-Click")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        lp.status_of("reader@example.com").await.unwrap(),
        "unsubscribed"
    );

    // nginx saw the visitors at their own addresses.
    let access = nginx.access_log();
    assert!(
        access.contains("127.0.0.2 ") && access.contains("127.0.0.3 "),
        "{access}"
    );
    drop(nginx);
    served.stop_ok().await;
}
