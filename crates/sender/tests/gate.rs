//! The last look at a subscriber's status, asked inside the transaction,
//! through the public client against real servers: the kit's SMTP server
//! (which tells what of the message has arrived) and Debian's postfix
//! over STARTTLS.
//!
//! The message travels while the gate answers, and only its final dot
//! waits for the answer: a gate that says no then still leaves nothing
//! delivered.

use std::time::Duration;

use letterpress_sender::{SmtpClient, Target, TrustedCa};
use letterpress_testkit::{Postfix, SmtpServer, TcpProxy, eventually};
use lettre::address::{Address, Envelope};

const HEAD: &str = "From: Rust Trends <news@example.org>\r\n\
                    To: reader@example.net\r\n\
                    Subject: Gated\r\n\
                    \r\n";

/// A body of a few TCP segments, so that it is not written in one piece
/// by accident.
fn body() -> String {
    (0..800)
        .map(|n| format!("Line {n} of the issue, with some words to fill it.\r\n"))
        .collect()
}

fn envelope() -> Envelope {
    let from: Address = "bounces@example.org".parse().unwrap();
    let to: Address = "reader@example.net".parse().unwrap();
    Envelope::new(Some(from), vec![to]).unwrap()
}

fn client(url: &str, ca: &TrustedCa) -> SmtpClient {
    let target = Target::from_url(url, None, ca).unwrap();
    SmtpClient::new(target, Duration::from_secs(20), 1)
}

/// A gate that gives `answer` only once the server holds the whole
/// message, waiting for its dot: a client that waited for the answer
/// before writing would never get one.
fn once_the_message_is_in(
    smtp: &SmtpServer,
    answer: Result<(), &'static str>,
) -> impl Fn() -> std::pin::Pin<Box<dyn Future<Output = Result<(), &'static str>>>> {
    let message_len = HEAD.len() + body().len();
    let smtp = smtp.clone();
    move || {
        let smtp = smtp.clone();
        Box::pin(async move {
            smtp.wait_until(
                "the whole message at the server, waiting for its dot",
                |s| s.unended_data() >= message_len,
            )
            .await;
            answer
        })
    }
}

/// The kit's server and a client of one connection to it.
async fn plain() -> (SmtpServer, SmtpClient) {
    let smtp = SmtpServer::start().await;
    let url = format!("smtp://127.0.0.1:{}", smtp.port);
    (smtp, client(&url, &TrustedCa::default()))
}

#[tokio::test]
async fn the_message_is_on_the_wire_before_the_gate_answers() {
    let (smtp, client) = plain().await;
    let body = body();
    let reply = client
        .send_gated(
            &envelope(),
            (HEAD.as_bytes(), body.as_bytes()),
            once_the_message_is_in(&smtp, Ok(())),
        )
        .await
        .expect("the gate said yes")
        .expect("the server accepted");
    assert_eq!(reply.code().to_string(), "250");
    let received = smtp.received();
    assert_eq!(received.len(), 1);
    assert_eq!(
        received[0].data.trim_end(),
        format!("{HEAD}{body}").trim_end(),
        "the message arrived whole"
    );
    assert_eq!(smtp.unended_data(), 0);
}

#[tokio::test]
async fn a_no_after_the_message_went_cuts_it_short() {
    let (smtp, client) = plain().await;
    let body = body();
    let outcome = client
        .send_gated(
            &envelope(),
            (HEAD.as_bytes(), body.as_bytes()),
            once_the_message_is_in(&smtp, Err("unsubscribed meanwhile")),
        )
        .await;
    assert_eq!(outcome.err(), Some("unsubscribed meanwhile"));
    smtp.wait_until("the server sees the connection end mid-DATA", |s| {
        s.cut_short() == 1
    })
    .await;
    assert!(smtp.received().is_empty(), "nothing was delivered");

    // The client goes on, on a new connection.
    let reply = client
        .send_gated(&envelope(), (HEAD.as_bytes(), body.as_bytes()), || async {
            Ok::<(), &str>(())
        })
        .await
        .expect("the gate said yes")
        .expect("the server accepted");
    assert_eq!(reply.code().to_string(), "250");
    assert_eq!(smtp.received().len(), 1);
}

/// Over STARTTLS the message goes through rustls, which the client's
/// write-then-wait rests on as well (see the sender's `socket.rs`). The
/// client reaches postfix through the kit's forwarder, which counts the
/// encrypted bytes: the gate answers only once more than the whole
/// message has gone through since it was asked, which only the message
/// itself can account for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_starttls_the_dot_waits_for_the_gate_and_a_no_delivers_nothing() {
    let smtp = SmtpServer::start().await;
    let Some(postfix) = Postfix::start(smtp.port) else {
        return;
    };
    let proxy = TcpProxy::start(&format!("127.0.0.1:{}", postfix.starttls_port)).await;
    let ca = TrustedCa::from_pem(&std::fs::read(postfix.ca_file()).unwrap()).unwrap();
    let client = client(
        &format!("smtp://localhost:{}?tls=required", proxy.port),
        &ca,
    );
    let body = body();
    let message_len = HEAD.len() + body.len();
    let once_it_went = |answer: Result<(), &'static str>| {
        let proxy = &proxy;
        move || async move {
            let asked_at = proxy.forwarded();
            proxy
                .wait_forwarded(
                    "the whole message through the forwarder, encrypted",
                    asked_at + message_len,
                )
                .await;
            answer
        }
    };

    let outcome = client
        .send_gated(
            &envelope(),
            (HEAD.as_bytes(), body.as_bytes()),
            once_it_went(Err("unsubscribed meanwhile")),
        )
        .await;
    assert_eq!(outcome.err(), Some("unsubscribed meanwhile"));
    // postfix's log is its only account of a session it did not relay
    // (the sessions before it are the kit's checks that postfix listens).
    let cut = eventually("postfix logs the refused message's session", async || {
        postfix
            .sessions()
            .into_iter()
            .find(|s| s.commands.contains("mail="))
    })
    .await;
    assert!(cut.tls.is_some(), "encrypted: {cut:?}");
    assert!(
        cut.commands.contains("data=0/1"),
        "its DATA was cut short: {cut:?}"
    );

    let reply = client
        .send_gated(
            &envelope(),
            (HEAD.as_bytes(), body.as_bytes()),
            once_it_went(Ok(())),
        )
        .await
        .expect("the gate said yes")
        .unwrap_or_else(|e| panic!("postfix accepted: {e}\n{}", postfix.log()));
    assert_eq!(reply.code().to_string(), "250");

    smtp.wait_until("postfix relays the accepted message", |s| {
        !s.received().is_empty()
    })
    .await;
    let received = smtp.received();
    assert_eq!(received.len(), 1, "only the message the gate let through");
    assert!(
        received[0].data.contains(&body),
        "the message arrived whole:\n{}",
        received[0].data
    );
}
