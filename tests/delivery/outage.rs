//! A database that goes away mid-send, as PostgreSQL does when it is
//! restarted: `send` waits for it (within `delivery.database_outage`) and
//! finishes the issue, every message delivered once. The test cuts the
//! connection between letterpress and the server with a forwarder of its
//! own, so the shared server keeps running for the other tests.

use letterpress_testkit::{PgDb, SmtpServer, TcpProxy, eventually};

use crate::helpers::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_rides_out_a_database_restart() {
    const N: usize = 30;
    const BEFORE: usize = 5;
    let Some(pg) = PgDb::create().await else {
        return;
    };
    let mut url = url::Url::parse(&pg.url).expect("a database URL");
    let target = format!(
        "{}:{}",
        url.host_str().unwrap_or("127.0.0.1"),
        url.port().unwrap_or(5432)
    );
    let proxy = TcpProxy::start(&target).await;
    url.set_port(Some(proxy.port)).expect("a port");
    let smtp = SmtpServer::start().await;
    let mut lp = lp().with_smtp(smtp.port).with_database(url.as_str());
    // Small batches: the worker goes back to the database for claims while
    // it is away, not only for outcomes.
    lp.set("LETTERPRESS_DELIVERY__BATCH_SIZE", "2")
        .set("LETTERPRESS_DELIVERY__CONCURRENCY", "2");
    let emails = import_active(&lp, N).await;
    let issue = lp.write_issue("content", "outage", "");

    smtp.hold_data_after(BEFORE);
    let mut child = lp.start(&["send", arg(&issue), "--yes", WAIT_ARG]);
    smtp.wait_until("the first messages accepted, the next held", |s| {
        s.received().len() >= BEFORE && s.held() > 0
    })
    .await;
    proxy.cut();
    smtp.release_held();
    eventually("send tries to reach the database again", async || {
        (proxy.refused() >= 3).then_some(())
    })
    .await;
    proxy.restore();

    let (status, lines) = child.wait().await;
    assert!(
        status.success(),
        "send rides out the outage: {status}\n{}",
        lines.join("\n")
    );
    let copies = smtp.copies();
    for email in &emails {
        assert_eq!(
            copies.get(email),
            Some(&1),
            "{email}: one copy; all: {copies:?}\nsend said:\n{}",
            lines.join("\n")
        );
    }
    let said: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains("database is unavailable"))
        .collect();
    assert!(
        !said.is_empty() && said.len() <= 4,
        "the outage is said, briefly, not once per retry: {said:?}"
    );
}
