//! `doctor`'s relay rows against the kit's scripted SMTP server, made to
//! lack one capability at a time: each lack is its own row, with its fix.

use letterpress_testkit::{Lp, SmtpServer};

/// An installation sending through `smtp` as `user` (password from the
/// environment, as an operator sets it).
fn with_relay(smtp: &SmtpServer, user: Option<(&str, &str)>) -> Lp {
    let mut lp = Lp::new(env!("CARGO_BIN_EXE_letterpress")).with_smtp(smtp.port);
    if let Some((user, password)) = user {
        lp.set(
            "LETTERPRESS_DELIVERY__SMTP_URL",
            &format!("smtp://{user}@127.0.0.1:{}", smtp.port),
        )
        .set("LETTERPRESS_DELIVERY__SMTP_PASSWORD", password);
    }
    lp
}

/// `doctor`'s table: (exit code, the rows whose name starts "relay").
/// (The exit code is 1 here whatever the relay: the kit's installation
/// has an http:// public URL and no DKIM key, which fail.)
async fn relay_rows(lp: &Lp) -> (Option<i32>, Vec<String>) {
    let out = lp.run(&["doctor"]).await;
    let rows = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.get(4..).unwrap_or("").trim_start().starts_with("relay"))
        .map(str::to_string)
        .collect();
    (out.status.code(), rows)
}

fn row<'a>(rows: &'a [String], what: &str) -> &'a str {
    rows.iter()
        .find(|r| r.contains(what))
        .unwrap_or_else(|| panic!("no {what:?} row in:\n{}", rows.join("\n")))
}

#[tokio::test]
async fn a_complete_relay_passes_every_relay_row() {
    let smtp = SmtpServer::start().await;
    smtp.require_auth("news", "s3cret");
    let lp = with_relay(&smtp, Some(("news", "s3cret")));
    let (_, rows) = relay_rows(&lp).await;
    let all = rows.join("\n");
    for what in [
        "relay answers EHLO",
        "relay accepts AUTH",
        "relay PIPELINING",
        "relay 8BITMIME",
        "relay SIZE",
    ] {
        assert!(row(&rows, what).starts_with("pass"), "{what}:\n{all}");
    }
    assert_eq!(smtp.auths_accepted(), 1, "the credentials were tried");
    // The kit's server has no TLS; on loopback that is a warning, not a
    // failure (the password never leaves the machine).
    assert!(row(&rows, "relay TLS").starts_with("WARN"), "{all}");
    assert!(smtp.received().is_empty(), "doctor sends nothing");
}

#[tokio::test]
async fn each_missing_capability_is_its_own_row_with_its_fix() {
    // (what the relay lacks, the row, its verdict, words of the fix)
    type Lack = fn(&SmtpServer);
    let cases: [(&str, Lack, &str, &str, &str); 3] = [
        (
            "PIPELINING",
            |s| s.without_pipelining(),
            "relay PIPELINING",
            "WARN",
            "delivery.concurrency",
        ),
        (
            "8BITMIME",
            |s| s.without_8bitmime_and_smtputf8(),
            "relay 8BITMIME",
            "WARN",
            "enable 8BITMIME",
        ),
        (
            "a large enough SIZE",
            |s| s.with_size_limit(200_000),
            "relay SIZE",
            "FAIL",
            "message_size_limit",
        ),
    ];
    for (lacks, make, what, verdict, fix) in cases {
        let smtp = SmtpServer::start().await;
        make(&smtp);
        let lp = with_relay(&smtp, None);
        let (_, rows) = relay_rows(&lp).await;
        let all = rows.join("\n");
        let r = row(&rows, what);
        assert!(r.starts_with(verdict), "without {lacks}:\n{all}");
        assert!(r.contains(fix), "without {lacks}, the fix:\n{all}");
        // The other capabilities still pass.
        for other in ["relay PIPELINING", "relay 8BITMIME", "relay SIZE"] {
            if other != what {
                assert!(row(&rows, other).starts_with("pass"), "{lacks}:\n{all}");
            }
        }
    }
}

#[tokio::test]
async fn refused_credentials_fail_with_where_they_come_from() {
    let smtp = SmtpServer::start().await;
    smtp.require_auth("news", "right");
    let lp = with_relay(&smtp, Some(("news", "wrong")));
    let (_, rows) = relay_rows(&lp).await;
    let all = rows.join("\n");
    let auth = row(&rows, "relay accepts AUTH");
    assert!(auth.starts_with("FAIL"), "{all}");
    assert!(
        auth.contains("535") && auth.contains("LETTERPRESS_DELIVERY__SMTP_PASSWORD"),
        "{all}"
    );
    assert_eq!(smtp.auths_accepted(), 0);

    // No user configured while the relay asks for AUTH: a warning.
    let lp = with_relay(&smtp, None);
    let (_, rows) = relay_rows(&lp).await;
    assert!(
        row(&rows, "relay accepts AUTH").starts_with("WARN"),
        "{}",
        rows.join("\n")
    );
}

#[tokio::test]
async fn a_relay_that_does_not_answer_fails_the_first_row() {
    // A port nothing listens on: bound, then closed.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut lp = Lp::new(env!("CARGO_BIN_EXE_letterpress"));
    lp.set("LETTERPRESS_DELIVERY__TRANSPORT", "smtp").set(
        "LETTERPRESS_DELIVERY__SMTP_URL",
        &format!("smtp://127.0.0.1:{port}"),
    );
    let (_, rows) = relay_rows(&lp).await;
    let all = rows.join("\n");
    assert_eq!(
        rows.len(),
        1,
        "nothing after a relay that is not there:\n{all}"
    );
    assert!(
        row(&rows, "relay answers EHLO").starts_with("FAIL"),
        "{all}"
    );
    assert!(
        row(&rows, "relay answers EHLO").contains("delivery.smtp_url"),
        "{all}"
    );
}
