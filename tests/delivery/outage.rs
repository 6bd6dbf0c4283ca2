//! A database that goes away mid-send, as PostgreSQL does when it is
//! restarted: `send` waits for it (within `delivery.database_outage`) and
//! finishes the issue, every message delivered once. The test cuts the
//! connection between letterpress and the server with a forwarder of its
//! own, so the shared server keeps running for the other tests.

use letterpress_testkit::{PgDb, SmtpServer, TcpProxy, eventually, sql};

use crate::helpers::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_rides_out_a_database_restart() {
    ride_out_an_outage(None).await;
}

/// The same outage, lasting longer than the leases (1 s here): the messages
/// sent while the database was away, their outcomes waiting for it, and
/// those claimed and not yet sent are still this send's when it is back,
/// so its next claim does not take them back as a dead worker's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_that_outlasts_the_leases_sends_nothing_twice() {
    ride_out_an_outage(Some("1s")).await;
}

/// Sends an issue to 30 subscribers on PostgreSQL and cuts the database off
/// while messages are in flight; with `lease` set, restores it only once
/// every lease held has run out.
async fn ride_out_an_outage(lease: Option<&str>) {
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
    if let Some(lease) = lease {
        lp.set("LETTERPRESS_DELIVERY__LEASE", lease);
    }
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
    if lease.is_some() {
        // Read past the forwarder: the send's own view is cut off. The
        // messages released above were sent and are not recorded, so some
        // leases are held.
        eventually("every lease held has run out", async || {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64);
            let expired = sql::query_i64(
                &pg.url,
                "SELECT CASE WHEN COUNT(*) > 0 AND COUNT(*) FILTER (WHERE lease_until >= $1) = 0 \
                 THEN 1 ELSE 0 END::bigint FROM deliveries \
                 WHERE lease_owner IS NOT NULL AND status IN ('queued','deferred')",
                now,
            )
            .await;
            (expired == Some(1)).then_some(())
        })
        .await;
    }
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
