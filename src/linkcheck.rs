//! `letterpress check --links`: every link and image of an issue fetched
//! before it is sent, because a broken link in a newsletter cannot be
//! fixed once it is in a hundred thousand inboxes.
//!
//! Each distinct address is fetched once, by a bounded pool: `HEAD` first
//! and `GET` where `HEAD` is refused (many servers answer it with 403, 405
//! or 501), redirects followed by hand up to a limit so that a loop is
//! named as one, a timeout per request, and no body read except an image's,
//! counted up to its size budget.

use std::collections::BTreeMap;
use std::time::Duration;

use futures_util::StreamExt;
use letterpress_composer::{Address, AddressKind};
use reqwest::{Method, StatusCode, header};
use url::Url;

/// How links are checked.
#[derive(Debug, Clone)]
pub(crate) struct LinkCheck {
    /// Requests in flight at once.
    pub concurrency: usize,
    /// Time for one request, body included.
    pub timeout: Duration,
    /// Redirects followed before giving up.
    pub max_redirects: usize,
    /// Images larger than this are reported.
    pub image_budget: u64,
}

impl Default for LinkCheck {
    fn default() -> Self {
        LinkCheck {
            concurrency: 8,
            timeout: Duration::from_secs(10),
            max_redirects: 5,
            image_budget: 1024 * 1024,
        }
    }
}

/// What became of one address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Answers 2xx (after redirects).
    Fine,
    /// Readers would get an error page or nothing.
    Broken(String),
    /// Works, but should be looked at (a WebP or oversized image).
    Warning(String),
}

/// One address with its verdict, at the line it is written on.
#[derive(Debug)]
pub(crate) struct Finding<'a> {
    pub address: &'a Address,
    pub verdict: Verdict,
}

/// Checks every address; the findings come in the order of `addresses`.
pub(crate) async fn check<'a>(
    addresses: &'a [Address],
    settings: &LinkCheck,
) -> anyhow::Result<Vec<Finding<'a>>> {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(settings.timeout)
        .user_agent(concat!("letterpress-linkcheck/", env!("CARGO_PKG_VERSION")))
        .build()?;
    // One fetch per distinct address (and kind: an image is also sized).
    let mut distinct: BTreeMap<(String, bool), Verdict> = BTreeMap::new();
    for a in addresses {
        distinct.insert(key(a), Verdict::Fine);
    }
    let results: Vec<((String, bool), Verdict)> =
        futures_util::stream::iter(distinct.into_keys().map(|k| {
            let client = client.clone();
            async move {
                let url = Url::parse(&k.0).expect("addresses are parsed URLs");
                let verdict = fetch(&client, url, k.1, settings).await;
                (k, verdict)
            }
        }))
        .buffer_unordered(settings.concurrency.max(1))
        .collect()
        .await;
    let verdicts: BTreeMap<_, _> = results.into_iter().collect();
    Ok(addresses
        .iter()
        .map(|address| Finding {
            address,
            verdict: verdicts[&key(address)].clone(),
        })
        .collect())
}

fn key(a: &Address) -> (String, bool) {
    (a.url.to_string(), a.kind == AddressKind::Image)
}

#[tracing::instrument(skip(client, settings), fields(url = %url))]
async fn fetch(client: &reqwest::Client, url: Url, image: bool, settings: &LinkCheck) -> Verdict {
    let mut current = url;
    let mut seen = vec![current.clone()];
    loop {
        let mut response = match request(client, Method::HEAD, &current).await {
            Ok(r) if r.status().is_client_error() || r.status().is_server_error() => {
                // HEAD refused: GET decides.
                match request(client, Method::GET, &current).await {
                    Ok(r) => r,
                    Err(e) => return Verdict::Broken(e),
                }
            }
            Ok(r) => r,
            Err(e) => return Verdict::Broken(e),
        };
        let status = response.status();
        if status.is_redirection() {
            let Some(next) = response
                .headers()
                .get(header::LOCATION)
                .and_then(|l| l.to_str().ok())
                .and_then(|l| current.join(l).ok())
            else {
                return Verdict::Broken(format!("{} without a usable Location", show(status)));
            };
            if seen.contains(&next) {
                seen.push(next);
                let chain: Vec<String> = seen.iter().map(Url::to_string).collect();
                return Verdict::Broken(format!("redirect loop: {}", chain.join(" -> ")));
            }
            if seen.len() > settings.max_redirects {
                return Verdict::Broken(format!(
                    "more than {} redirects (last to {next})",
                    settings.max_redirects
                ));
            }
            seen.push(next.clone());
            current = next;
            continue;
        }
        if !status.is_success() {
            return Verdict::Broken(show(status));
        }
        if !image {
            return Verdict::Fine;
        }
        return image_verdict(client, &current, &mut response, settings).await;
    }
}

/// A fetched image: its type from the server, its size from
/// `Content-Length` or, when there is none, counted up to the budget.
async fn image_verdict(
    client: &reqwest::Client,
    url: &Url,
    response: &mut reqwest::Response,
    settings: &LinkCheck,
) -> Verdict {
    let content_type = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    if content_type.starts_with("image/webp") {
        return Verdict::Warning(
            "a WebP image, which Outlook and some other mail clients do not show".into(),
        );
    }
    let size = match response.content_length().filter(|&n| n > 0) {
        Some(n) => n,
        None => match count_body(client, url, settings.image_budget).await {
            Ok(n) => n,
            Err(e) => return Verdict::Broken(e),
        },
    };
    if size > settings.image_budget {
        return Verdict::Warning(format!(
            "the image is {} KB (over the {} KB budget): slow to load on a phone",
            size / 1024,
            settings.image_budget / 1024
        ));
    }
    Verdict::Fine
}

/// Reads a body, stopping once it is past `budget`.
async fn count_body(client: &reqwest::Client, url: &Url, budget: u64) -> Result<u64, String> {
    let mut response = request(client, Method::GET, url).await?;
    let mut total = 0u64;
    while let Some(chunk) = response.chunk().await.map_err(describe)? {
        total += chunk.len() as u64;
        if total > budget {
            break;
        }
    }
    Ok(total)
}

async fn request(
    client: &reqwest::Client,
    method: Method,
    url: &Url,
) -> Result<reqwest::Response, String> {
    client
        .request(method, url.clone())
        .send()
        .await
        .map_err(describe)
}

fn show(status: StatusCode) -> String {
    match status.canonical_reason() {
        Some(reason) => format!("{} {reason}", status.as_u16()),
        None => status.as_u16().to_string(),
    }
}

/// A request error in a reader's terms: timed out, a TLS failure (with
/// rustls's reason: an unknown issuer, an expired certificate, a server
/// that does not speak TLS), or why the connection failed; said once.
fn describe(e: reqwest::Error) -> String {
    if e.is_timeout() {
        return "timed out".into();
    }
    // io::Error's source() skips the error it wraps, so wrapped errors are
    // walked through get_ref() as well.
    let mut root: &(dyn std::error::Error + 'static) = &e;
    let mut tls = None;
    loop {
        if let Some(t) = root.downcast_ref::<rustls::Error>() {
            tls = Some(t.to_string());
        }
        let wrapped = root
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .map(|inner| inner as &(dyn std::error::Error + 'static));
        match wrapped.or_else(|| root.source()) {
            Some(next) => root = next,
            None => break,
        }
    }
    match tls {
        Some(reason) => format!("TLS error: {reason}"),
        None if e.is_connect() => format!("cannot connect: {root}"),
        None => root.to_string(),
    }
}
