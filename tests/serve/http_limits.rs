//! What a public listener must hold against: clients that trickle their
//! request or never send the body they announced, and pages that must not
//! be framed, sniffed, cached or named in a Referer.

use std::time::Duration;

use letterpress_testkit::{Served, WAIT, client};
use reqwest::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::lp;

/// Reads until the server closes the connection (bounded by the kit's
/// wait); returns what it answered, if anything.
async fn until_closed(stream: &mut TcpStream) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout(WAIT, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return String::from_utf8_lossy(&got).into_owned(),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Err(_) => panic!("the server kept the connection open for {WAIT:?}"),
        }
    }
}

async fn serve_with_short_timeouts() -> (letterpress_testkit::Lp, Served) {
    let mut lp = lp();
    lp.set("LETTERPRESS_SERVER__HEADER_TIMEOUT", "1s");
    lp.set("LETTERPRESS_SERVER__REQUEST_TIMEOUT", "1s");
    let served = lp.serve().await;
    (lp, served)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_trickling_its_headers_is_cut_off() {
    let (_lp, served) = serve_with_short_timeouts().await;
    let mut stream = TcpStream::connect(served.addr).await.unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\n")
        .await
        .unwrap();
    // One header line every half second, for longer than any limit allows:
    // the writer stops on its own once the server has closed the socket.
    let (mut read, mut write) = stream.into_split();
    let trickle = tokio::spawn(async move {
        for i in 0..240 {
            tokio::time::sleep(Duration::from_millis(500)).await;
            if write
                .write_all(format!("X-Slow-{i}: 1\r\n").as_bytes())
                .await
                .is_err()
            {
                return i;
            }
        }
        240
    });
    let mut buf = [0u8; 256];
    let closed = tokio::time::timeout(WAIT, read.read(&mut buf)).await;
    assert!(
        matches!(closed, Ok(Ok(_)) | Ok(Err(_))),
        "the trickling connection is still open after {WAIT:?}"
    );
    let lines_sent = trickle.await.unwrap();
    assert!(lines_sent < 240, "the server read all 240 trickled lines");
    served.stop_ok().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_never_comes_is_answered_408_and_closed() {
    let (_lp, served) = serve_with_short_timeouts().await;
    let mut stream = TcpStream::connect(served.addr).await.unwrap();
    stream
        .write_all(
            b"POST /subscribe HTTP/1.1\r\nHost: x\r\n\
              Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 60000\r\n\r\nemail=",
        )
        .await
        .unwrap();
    let answer = until_closed(&mut stream).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");

    // A body declared larger than any form: refused at once.
    let mut stream = TcpStream::connect(served.addr).await.unwrap();
    stream
        .write_all(b"POST /subscribe HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000\r\n\r\n")
        .await
        .unwrap();
    let answer = until_closed(&mut stream).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    served.stop_ok().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_kept_alive_connection_is_closed() {
    let (_lp, served) = serve_with_short_timeouts().await;
    let mut stream = TcpStream::connect(served.addr).await.unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    // The answer, then nothing more from us: the server closes the
    // connection rather than keep it for a next request forever.
    let answer = until_closed(&mut stream).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    served.stop_ok().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_carry_the_security_headers() {
    let lp = lp();
    lp.add(&["reader@example.com"]).await;
    let served = lp.serve().await;
    let http = client();
    let id = lp.id_of("reader@example.com").await;
    let token = lp
        .token(letterpress_signing::Purpose::Unsubscribe, id)
        .await;
    for (what, response) in [
        (
            "unsubscribe page",
            http.get(served.url(&format!("/u/{token}")))
                .send()
                .await
                .unwrap(),
        ),
        (
            "unknown token",
            http.get(served.url("/u/nope")).send().await.unwrap(),
        ),
        (
            "confirm page",
            http.get(served.url("/confirm/nope")).send().await.unwrap(),
        ),
        (
            "signup answer",
            http.post(served.url("/subscribe"))
                .form(&[("email", "new@example.com")])
                .send()
                .await
                .unwrap(),
        ),
    ] {
        let h = response.headers();
        let get = |name: &str| {
            h.get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string()
        };
        let csp = get("content-security-policy");
        for directive in [
            "default-src 'none'",
            "style-src 'unsafe-inline'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        ] {
            assert!(
                csp.contains(directive),
                "{what}: CSP {csp:?} lacks {directive}"
            );
        }
        assert_eq!(get("x-frame-options"), "DENY", "{what}");
        assert_eq!(get("referrer-policy"), "no-referrer", "{what}");
        assert_eq!(get("x-content-type-options"), "nosniff", "{what}");
        assert_eq!(get("cache-control"), "no-store", "{what}");
        assert!(
            [StatusCode::OK, StatusCode::NOT_FOUND, StatusCode::SEE_OTHER]
                .contains(&response.status()),
            "{what}: {}",
            response.status()
        );
    }
    served.stop_ok().await;
}
