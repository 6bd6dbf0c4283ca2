//! `check --links`: every link and image of an issue fetched from a local
//! web server that answers each case a link check must recognise.

use std::time::Duration;

use axum::Router;
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;

use crate::{lp, stderr};

/// A web server on loopback with one route per case.
async fn site() -> String {
    let app = Router::new()
        .route("/ok", get(|| async { "fine" }))
        .route("/missing", get(|| async { StatusCode::NOT_FOUND }))
        .route(
            "/error",
            get(|| async { StatusCode::INTERNAL_SERVER_ERROR }),
        )
        .route(
            "/no-head",
            get(|method: Method| async move {
                // axum answers HEAD with the GET handler; this server
                // refuses HEAD the way some real ones do.
                if method == Method::HEAD {
                    StatusCode::METHOD_NOT_ALLOWED.into_response()
                } else {
                    "fine".into_response()
                }
            }),
        )
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(30)).await;
                "too late"
            }),
        )
        .route("/hop", get(|| async { Redirect::permanent("/ok") }))
        .route("/loop-a", get(|| async { Redirect::temporary("/loop-b") }))
        .route("/loop-b", get(|| async { Redirect::temporary("/loop-a") }))
        .route(
            "/photo",
            get(|| async { image("image/webp", vec![0; 2048]) }),
        )
        .route(
            "/poster.png",
            get(|| async { image("image/png", vec![0; 3 * 1024 * 1024]) }),
        )
        .route(
            "/logo.png",
            get(|| async { image("image/png", vec![0; 4096]) }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("address");
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("127.0.0.1:{}", addr.port())
}

fn image(content_type: &'static str, body: Vec<u8>) -> Response {
    let mut headers = HeaderMap::new();
    headers.insert(header::CONTENT_TYPE, content_type.parse().expect("a type"));
    (headers, body).into_response()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_links_are_reported_with_their_line_and_exit_1() {
    let host = site().await;
    let lp = lp();
    let issue = lp.path("links.md");
    let body = [
        format!("[fine](http://{host}/ok)"),
        format!("[gone](http://{host}/missing)"),
        format!("[failing](http://{host}/error)"),
        format!("[refuses HEAD](http://{host}/no-head)"),
        format!("[slow](http://{host}/slow)"),
        format!("[moved](http://{host}/hop)"),
        format!("[loop](http://{host}/loop-a)"),
        format!("[no TLS there](https://{host}/ok)"),
        format!("![a photo](http://{host}/photo)"),
        format!("<img src=\"http://{host}/poster.png\" alt=\"poster\">"),
        format!("![logo](http://{host}/logo.png)"),
        format!("[gone again](http://{host}/missing)"),
    ];
    let source = format!("+++\ntitle = \"Links\"\n+++\n\n{}\n", body.join("\n\n"));
    std::fs::write(&issue, source).expect("write issue");
    let text = std::fs::read_to_string(&issue).expect("read back");
    let line_of = |needle: &str| {
        text.lines()
            .position(|l| l.contains(needle))
            .map(|i| i + 1)
            .unwrap_or_else(|| panic!("{needle} not in the issue"))
    };
    let path = issue.display().to_string();
    let out = lp
        .run(&["check", &path, "--links", "--link-timeout", "2s"])
        .await;
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(
        out.status.code(),
        Some(1),
        "broken links exit 1:\n{report}\n{}",
        stderr(&out)
    );
    for (needle, says) in [
        ("/missing)", "404 Not Found"),
        ("/error)", "500 Internal Server Error"),
        ("/slow)", "timed out"),
        ("/loop-a)", "redirect loop"),
        ("https://", "TLS"),
        ("/photo)", "WebP"),
        ("/poster.png", "budget"),
        ("gone again", "404 Not Found"),
    ] {
        let line = line_of(needle);
        let found = report
            .lines()
            .find(|l| l.starts_with(&format!("{path}:{line}: ")))
            .unwrap_or_else(|| panic!("nothing reported at line {line} ({needle}):\n{report}"));
        assert!(
            found.contains(says),
            "line {line} should say {says:?}: {found}"
        );
    }
    for fine in ["/ok)", "/no-head)", "/hop)", "/logo.png)"] {
        let line = line_of(fine);
        assert!(
            !report.contains(&format!("{path}:{line}: ")),
            "line {line} ({fine}) works and is not reported:\n{report}"
        );
    }

    let out = lp
        .run(&[
            "check",
            &path,
            "--links",
            "--warn-only",
            "--link-timeout",
            "2s",
        ])
        .await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "--warn-only reports and exits 0"
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("404 Not Found"));
}
