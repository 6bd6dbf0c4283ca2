//! An unsubscribe that arrives mid-send wins, pipelined or not.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::helpers::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsubscribed_mid_send_gets_nothing() {
    unsubscribed_mid_send(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsubscribed_mid_send_gets_nothing_without_pipelining() {
    unsubscribed_mid_send(false).await;
}

/// The last look at the subscriber's status comes inside the transaction,
/// after MAIL FROM: with PIPELINING the server already waits for the
/// message and the connection is dropped without it; without, the
/// transaction is reset before DATA. Either way nothing is delivered.
async fn unsubscribed_mid_send(pipelining: bool) {
    let mut s = Setup::sqlite().await;
    if !pipelining {
        s.smtp.without_pipelining();
    }
    s.lp.set("LETTERPRESS_DELIVERY__CONCURRENCY", "1");
    import(
        &s.lp,
        &[
            ("first@x.example", "", "active"),
            ("middle@x.example", "", "active"),
            ("later@x.example", "", "active"),
        ],
    )
    .await;
    let issue = s.lp.write_issue("content", "midway", "");
    let lp = Arc::new(s.lp);
    // At the first RCPT (while the sender waits for the reply), the
    // subscriber later in the queue unsubscribes, synchronously.
    let first_rcpt = Arc::new(std::sync::Mutex::new(None::<String>));
    {
        let lp = Arc::clone(&lp);
        let first_rcpt = Arc::clone(&first_rcpt);
        let done = AtomicBool::new(false);
        let rt = tokio::runtime::Handle::current();
        s.smtp.on_rcpt(move |rcpt| {
            if done.swap(true, Ordering::SeqCst) {
                return;
            }
            *first_rcpt.lock().unwrap() = Some(rcpt.to_string());
            // The hook runs on a blocking thread: waiting here holds the
            // RCPT reply until the unsubscribe is committed.
            rt.block_on(lp.ok(&["subscribers", "remove", "later@x.example"]));
        });
    }
    let out = send(&lp, &issue, &[]).await;
    assert_eq!(
        first_rcpt.lock().unwrap().as_deref(),
        Some("first@x.example"),
        "the queue goes in list order"
    );
    assert_eq!(
        copies(&s.smtp),
        one_each(&["first@x.example", "middle@x.example"]),
        "{out}"
    );
    // Its transaction began (the RCPT was seen) and was abandoned.
    assert_eq!(s.smtp.attempts("later@x.example"), 1);
    // Pipelined when offered: MAIL came with RCPT and DATA behind it.
    let pipelined = s.smtp.pipelined();
    if pipelining {
        assert_eq!(pipelined, 3, "every transaction pipelined");
    } else {
        assert_eq!(pipelined, 0, "nothing pipelined to a relay without it");
    }
    assert_eq!(counts(&lp, "midway").await, expect(0, 0, 2, 0, 1));
    assert_eq!(
        lp.status_of("later@x.example").await.as_deref(),
        Some("unsubscribed")
    );
}
