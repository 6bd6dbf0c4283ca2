//! Publishing an issue is one transaction, seen from outside: a scheduled
//! issue whose enqueue fails is not recorded as sent, and the scheduler
//! sends it on a later tick.

#![cfg(unix)]

#[path = "support/server.rs"]
mod server;
#[path = "support/smtp.rs"]
mod smtp;

use sqlx::Connection;

use server::Lp;
use smtp::SmtpServer;

/// Runs one statement on the installation's SQLite file, from outside
/// letterpress (as an operator's `sqlite3` would).
async fn sqlite(lp: &Lp, statement: &str) {
    let url = format!("sqlite://{}", lp.path("lp.db").display());
    let mut conn = sqlx::SqliteConnection::connect(&url)
        .await
        .expect("open the installation's database");
    sqlx::raw_sql(sqlx::AssertSqlSafe(statement))
        .execute(&mut conn)
        .await
        .expect(statement);
    conn.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduled_issue_whose_enqueue_fails_is_sent_on_a_later_tick() {
    let smtp = SmtpServer::start().await;
    let mut lp = Lp::new().with_smtp(smtp.port);
    lp.set("LETTERPRESS_SCHEDULE__CRON", "* * * * * *");
    lp.add(&["a@example.com", "b@example.com", "c@example.com"])
        .await;
    lp.write_issue("issues", "due", "send_at = \"2020-01-01T00:00:00Z\"");
    // The database refuses new deliveries, as a full disk would.
    sqlite(
        &lp,
        "CREATE TRIGGER refuse_deliveries BEFORE INSERT ON deliveries \
         BEGIN SELECT RAISE(ABORT, 'no room for deliveries'); END",
    )
    .await;

    let served = lp.serve().await;
    served
        .wait_for_line("a failed scheduler tick", |l| {
            l.contains("scheduler tick failed") && l.contains("no room for deliveries")
        })
        .await;
    assert_eq!(
        lp.issue_status("due").await,
        None,
        "a failed publish records no issue, so the issue is still due"
    );
    assert!(smtp.received().is_empty());

    sqlite(&lp, "DROP TRIGGER refuse_deliveries").await;
    smtp.wait_until("a copy for each subscriber", |s| s.copies().len() == 3)
        .await;
    served.stop_ok().await;
    let status = lp.issue_status("due").await.expect("the issue is recorded");
    assert_eq!(
        (status["total"].as_u64(), status["sent"].as_u64()),
        (Some(3), Some(3))
    );
    assert!(
        smtp.copies().values().all(|n| *n == 1),
        "{:?}",
        smtp.copies()
    );
}
