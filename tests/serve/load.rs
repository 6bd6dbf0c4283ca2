//! Unsubscribes under load while an issue goes out (bounded, loopback only).
//!
//! 2,000 subscribers; `letterpress send` delivers an issue through the
//! in-process SMTP server at 200 messages/s while the test fires 10,000
//! one-click POSTs (every token five times, shuffled, 32 at a time) at
//! `letterpress serve`. Afterwards every POST was answered 200, every
//! subscriber is unsubscribed, and no message was started for an address
//! after its unsubscribe had been answered.
//!
//! "Started" is the MAIL FROM of the message's SMTP transaction: a message
//! already in its transaction when the unsubscribe is answered cannot be
//! called back, and is counted but allowed. Both instants come from one
//! monotonic clock: the HTTP client and the SMTP server run in this process,
//! the server on a thread of its own so that its instants are not late.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use futures_util::StreamExt;
use letterpress_signing::Purpose;
use letterpress_testkit::{SmtpServer, WAIT, client};
use rand::seq::SliceRandom;
use reqwest::StatusCode;
use reqwest::header::CONTENT_TYPE;

use crate::lp;

const SUBSCRIBERS: usize = 2_000;
const ROUNDS: usize = 5;
const CONCURRENCY: usize = 32;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_click_unsubscribes_under_load_win_against_a_running_send() {
    let smtp = SmtpServer::start_on_its_own_thread();
    let mut lp = lp().with_smtp(smtp.port);
    lp.set("LETTERPRESS_DELIVERY__RATE_PER_SECOND", "200");
    let csv: String = (0..SUBSCRIBERS)
        .map(|i| format!("reader{i}@example.com\n"))
        .collect();
    std::fs::write(lp.path("list.csv"), format!("email\n{csv}")).unwrap();
    lp.ok(&["subscribers", "import", "list.csv"]).await;
    // The tokens the messages carry, minted as the server mints them: the
    // POSTs must be ready before the messages that would carry them arrive.
    let mut tokens: Vec<(String, String)> = Vec::new();
    for s in lp.subscribers().await {
        let email = s["email"].as_str().unwrap().to_string();
        let id = s["id"].as_i64().unwrap();
        tokens.push((email, lp.token(Purpose::Unsubscribe, id).await));
    }
    assert_eq!(tokens.len(), SUBSCRIBERS);

    let served = lp.serve().await;
    let issue = lp.write_issue("drafts", "under-load", "");
    let send = lp.cmd(&["send", issue.to_str().unwrap(), "--yes"]).output();
    let send = tokio::spawn(send);
    // Fire once the send is under way, so the two overlap.
    smtp.wait_until("the first messages", |s| s.received().len() >= 20)
        .await;

    let mut order: Vec<usize> = Vec::with_capacity(SUBSCRIBERS * ROUNDS);
    for _ in 0..ROUNDS {
        let mut round: Vec<usize> = (0..SUBSCRIBERS).collect();
        round.shuffle(&mut rand::rng());
        order.extend(round);
    }
    let http = client();
    let fired = Instant::now();
    let answered: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let failures: Arc<Mutex<Vec<String>>> = Arc::default();
    futures_util::stream::iter(order)
        .for_each_concurrent(CONCURRENCY, |i| {
            let (email, token) = &tokens[i];
            let request = http
                .post(served.url(&format!("/u/{token}")))
                .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body("List-Unsubscribe=One-Click")
                .send();
            let answered = Arc::clone(&answered);
            let failures = Arc::clone(&failures);
            async move {
                match request.await {
                    Ok(r) if r.status() == StatusCode::OK => {
                        let now = Instant::now();
                        answered.lock().unwrap().entry(email.clone()).or_insert(now);
                    }
                    Ok(r) => failures
                        .lock()
                        .unwrap()
                        .push(format!("{email}: {}", r.status())),
                    Err(e) => failures.lock().unwrap().push(format!("{email}: {e}")),
                }
            }
        })
        .await;
    eprintln!(
        "{} POSTs answered in {:?}",
        SUBSCRIBERS * ROUNDS,
        fired.elapsed()
    );
    let failures = failures.lock().unwrap().clone();
    assert!(
        failures.is_empty(),
        "{} POSTs not answered 200, e.g. {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );

    let out = tokio::time::timeout(WAIT, send)
        .await
        .expect("send finishes")
        .unwrap()
        .expect("send ran");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    served.stop_ok().await;

    let statuses = lp.statuses().await;
    let still: Vec<_> = statuses
        .iter()
        .filter(|(_, s)| s.as_str() != "unsubscribed")
        .collect();
    assert!(still.is_empty(), "not unsubscribed: {still:?}");

    let answered = answered.lock().unwrap().clone();
    assert_eq!(answered.len(), SUBSCRIBERS);
    let received = smtp.received();
    let mut in_transaction = 0;
    let mut late = Vec::new();
    for message in &received {
        for to in &message.rcpt_to {
            let unsubscribed = answered[to];
            if message.started > unsubscribed {
                late.push(format!(
                    "{to}: transaction began {:?} after the unsubscribe was answered",
                    message.started - unsubscribed
                ));
            } else if message.at > unsubscribed {
                in_transaction += 1;
            }
        }
    }
    eprintln!(
        "{} messages sent, {} skipped; {in_transaction} were in their SMTP transaction when the unsubscribe was answered",
        received.len(),
        SUBSCRIBERS - received.len()
    );
    assert!(
        late.is_empty(),
        "{} messages started after their unsubscribe was answered: {late:#?}",
        late.len()
    );
}
