//! The file transport: one `.eml` per recipient, named for an operator.

use mail_parser::MessageParser;

use crate::helpers::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_transport_names_each_file_by_delivery_and_address() {
    // No SMTP: the embedded default transport writes to the outbox.
    let lp = lp();
    import(
        &lp,
        &[
            ("ann@x.example", "", "active"),
            ("o'brien/news@x.example", "", "active"),
        ],
    )
    .await;
    let issue = lp.write_issue("content", "filed", "");
    send(&lp, &issue, &[]).await;
    send(&lp, &issue, &[]).await;
    let folder = lp.path("outbox/filed");
    let mut names: Vec<String> = std::fs::read_dir(&folder)
        .unwrap_or_else(|e| panic!("{}: {e}", folder.display()))
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names.len(),
        2,
        "one file per recipient, none twice: {names:?}"
    );
    let stem_for = |address: &str| {
        names
            .iter()
            .find_map(|n| {
                let (id, rest) = n.split_once('-')?;
                (id.parse::<u64>().is_ok() && rest == format!("{address}.eml")).then_some(n)
            })
            .unwrap_or_else(|| panic!("no <id>-{address}.eml in {names:?}"))
            .clone()
    };
    let ann = stem_for("ann@x.example");
    let obrien = stem_for("o_brien_news@x.example");
    for (file, to) in [(ann, "ann@x.example"), (obrien, "o'brien/news@x.example")] {
        let raw = std::fs::read(folder.join(&file)).unwrap();
        let m = MessageParser::default().parse(&raw).expect("a message");
        let addr = m.to().and_then(|a| a.first()).and_then(|a| a.address());
        assert_eq!(addr, Some(to), "{file} is the message for {to}");
    }
}

/// Issue #10, point 14: a test copy's file is named by the worker's safe
/// file stem, so an address with a `/` is written where it belongs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_copies_use_the_workers_safe_file_stem() {
    let lp = lp();
    let issue = lp.write_issue("content", "copied", "");
    lp.ok(&["send", arg(&issue), "--to", "o'brien/news@x.example"])
        .await;
    let folder = lp.path("outbox/copied-test");
    let names: Vec<String> = std::fs::read_dir(&folder)
        .unwrap_or_else(|e| panic!("{}: {e}", folder.display()))
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names, ["0-o_brien_news@x.example.eml"]);
    let raw = std::fs::read(folder.join(&names[0])).unwrap();
    let m = MessageParser::default().parse(&raw).expect("a message");
    let addr = m.to().and_then(|a| a.first()).and_then(|a| a.address());
    assert_eq!(addr, Some("o'brien/news@x.example"));
}
