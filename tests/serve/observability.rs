//! `/healthz`, Prometheus `/metrics`, and JSON logs.

use letterpress_testkit::{SmtpServer, client, eventually};
use reqwest::StatusCode;
use reqwest::header::CONTENT_TYPE;

use crate::lp;

/// The value of one sample line (`name{labels} value`) of a Prometheus text.
/// The bearer token `/metrics` is configured with here.
const METRICS_TOKEN: &str = "metrics-test-token-0123456789abcdef";

fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|l| {
        let (name, value) = l.rsplit_once(' ')?;
        (name == series).then(|| value.parse().ok())?
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_prometheus_metrics() {
    let smtp = SmtpServer::start().await;
    let mut lp = lp().with_smtp(smtp.port);
    lp.set("LETTERPRESS_SERVER__METRICS_TOKEN", METRICS_TOKEN);
    lp.add(&["a@example.com", "b@example.com"]).await;
    // Due already: the server's own worker sends it at start-up.
    lp.write_issue("issues", "metrics", "send_at = \"2020-01-01T00:00:00Z\"");
    let served = lp.serve().await;
    let http = client();
    for _ in 0..3 {
        let r = http.get(served.url("/healthz")).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.text().await.unwrap().trim(), "ok");
    }
    let r = http.get(served.url("/u/nonsense")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    smtp.wait_until("both copies", |s| s.received().len() == 2)
        .await;
    // Recorded as sent before the first scrape: the database's figures are
    // cached for a few seconds once read.
    eventually("both recorded as sent", async || {
        let c = lp.issue_status("metrics").await?;
        (c["sent"] == 2).then_some(())
    })
    .await;

    // Not public: without the bearer token, or with a wrong one, 404.
    let r = http.get(served.url("/metrics")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = http
        .get(served.url("/metrics"))
        .bearer_auth("not-the-token")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);

    let metrics = eventually("the deliveries settled in /metrics", async || {
        let r = http
            .get(served.url("/metrics"))
            .bearer_auth(METRICS_TOKEN)
            .send()
            .await
            .ok()?;
        let ctype = r.headers().get(CONTENT_TYPE)?.to_str().ok()?.to_string();
        assert!(ctype.starts_with("text/plain; version=0.0.4"), "{ctype}");
        let text = r.text().await.ok()?;
        (sample(&text, r#"letterpress_deliveries{status="sent"}"#) == Some(2.0)).then_some(text)
    })
    .await;
    assert_eq!(
        sample(
            &metrics,
            r#"letterpress_http_requests_total{route="/healthz",status="200"}"#
        ),
        Some(3.0),
        "{metrics}"
    );
    assert_eq!(
        sample(
            &metrics,
            r#"letterpress_http_requests_total{route="/u/{token}",status="404"}"#
        ),
        Some(1.0),
        "{metrics}"
    );
    assert_eq!(
        sample(&metrics, r#"letterpress_worker_attempts{outcome="sent"}"#),
        Some(2.0),
        "{metrics}"
    );
    assert_eq!(
        sample(&metrics, r#"letterpress_smtp_replies{class="2xx"}"#),
        Some(2.0),
        "{metrics}"
    );
    assert_eq!(
        sample(&metrics, r#"letterpress_subscribers{status="active"}"#),
        Some(2.0),
        "{metrics}"
    );
    // Every line is a comment or `series value`.
    for l in metrics.lines() {
        assert!(
            l.starts_with('#') || sample(l, l.rsplit_once(' ').unwrap().0).is_some(),
            "not Prometheus text: {l:?}"
        );
    }
    served.stop_ok().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_are_one_object_per_line_with_request_spans() {
    let mut lp = lp();
    lp.set("LETTERPRESS_LOG_FORMAT", "json")
        .set("LETTERPRESS_LOG", "info");
    let served = lp.serve().await;
    let r = client().get(served.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    served
        .wait_for_line("the request's log line", |l| l.contains("/healthz"))
        .await;
    let (status, lines) = served.stop().await;
    assert!(status.success());
    let objects: Vec<serde_json::Value> = lines
        .iter()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l)
                .ok()
                .filter(serde_json::Value::is_object)
                .unwrap_or_else(|| panic!("not a JSON object: {l:?}"))
        })
        .collect();
    let request = objects
        .iter()
        .find(|o| o["span"]["name"] == "request" && o["span"]["route"] == "/healthz")
        .unwrap_or_else(|| panic!("no event in a request span: {lines:#?}"));
    assert_eq!(request["span"]["method"], "GET");
    assert_eq!(request["fields"]["status"], 200);
    assert_eq!(request["level"], "INFO");
    assert!(
        objects.iter().any(|o| o["fields"]["message"] == "stopped"),
        "{lines:#?}"
    );
}
