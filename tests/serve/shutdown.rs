//! The graceful stop on SIGTERM: requests and messages in flight finish.

use letterpress_testkit::{SmtpServer, WAIT, client, eventually};
use reqwest::StatusCode;

use crate::lp;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_requests_and_messages_in_flight() {
    let smtp = SmtpServer::start().await;
    // The SMTP server holds these recipients at RCPT until released: one
    // issue delivery (the worker's) and one signup confirmation (a request's).
    let (arrived_tx, mut arrived) = tokio::sync::mpsc::unbounded_channel::<String>();
    let release = std::sync::Arc::new((std::sync::Mutex::new(false), std::sync::Condvar::new()));
    {
        let release = std::sync::Arc::clone(&release);
        smtp.on_rcpt(move |rcpt| {
            if rcpt.starts_with("held") {
                let _ = arrived_tx.send(rcpt.to_string());
                let (lock, cv) = &*release;
                let mut go = lock.lock().unwrap();
                while !*go {
                    go = cv.wait(go).unwrap();
                }
            }
        });
    }
    let lp = lp().with_smtp(smtp.port);
    lp.add(&["held-reader@example.com"]).await;
    lp.write_issue("issues", "in-flight", "send_at = \"2020-01-01T00:00:00Z\"");
    let served = lp.serve().await;
    let signup = {
        let url = served.url("/subscribe");
        tokio::spawn(async move {
            let r = client()
                .post(url)
                .form(&[("email", "held-signup@example.com")])
                .send()
                .await
                .expect("the request in flight is answered");
            (r.status(), r.text().await.unwrap_or_default())
        })
    };
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let rcpt = tokio::time::timeout(WAIT, arrived.recv())
            .await
            .expect("both messages reach RCPT")
            .unwrap();
        seen.push(rcpt);
    }

    served.terminate();
    served
        .wait_for_line("the stop notice", |l| l.starts_with("stopping"))
        .await;
    // New connections are refused once the listener is closed.
    let addr = served.addr;
    eventually("the listener to close", async || {
        tokio::net::TcpStream::connect(addr)
            .await
            .is_err()
            .then_some(())
    })
    .await;
    {
        let (lock, cv) = &*release;
        *lock.lock().unwrap() = true;
        cv.notify_all();
    }
    let (status, body) = signup.await.unwrap();
    assert_eq!(status, StatusCode::SEE_OTHER, "{body}");
    let mut served = served;
    let (status, lines) = served.wait().await;
    assert!(status.success(), "exit status {status}");
    assert_eq!(lines.last().map(String::as_str), Some("stopped"));
    let copies = smtp.copies();
    assert_eq!(copies.get("held-reader@example.com"), Some(&1));
    assert_eq!(copies.get("held-signup@example.com"), Some(&1));
    // The message in flight was recorded as sent, not left for a re-send.
    let issue = lp.issue_status("in-flight").await.expect("issue recorded");
    assert_eq!(issue["sent"], 1, "{issue}");
    assert_eq!(issue["queued"], 0, "{issue}");
    assert_eq!(
        lp.status_of("held-signup@example.com").await.unwrap(),
        "pending"
    );
}
