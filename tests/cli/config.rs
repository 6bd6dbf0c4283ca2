//! Usage and configuration errors: exit codes, and messages that name
//! the key and where it came from.

use crate::{issue, lp, stderr};

#[tokio::test]
async fn usage_errors_exit_2() {
    let lp = lp();
    assert_eq!(lp.run(&["render"]).await.status.code(), Some(2));
    assert_eq!(lp.run(&["no-such-command"]).await.status.code(), Some(2));
}

#[tokio::test]
async fn config_errors_name_the_key_and_source() {
    let lp = lp();
    std::fs::write(
        lp.path("letterpress.toml"),
        "[delivery]\nconcurrency = \"many\"\n",
    )
    .unwrap();
    let out = lp.run(&["render", &issue("toml.md")]).await;
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("delivery.concurrency") && err.contains("letterpress.toml"),
        "{err}"
    );

    std::fs::write(lp.path("letterpress.toml"), "").unwrap();
    let out = lp
        .cmd(&["render", &issue("toml.md")])
        .env("LETTERPRESS_DELIVERY__RETRY__INITIAL", "soon")
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("delivery.retry.initial")
            && err.contains("LETTERPRESS_DELIVERY__RETRY__INITIAL"),
        "{err}"
    );

    std::fs::write(
        lp.path("letterpress.toml"),
        "[server]\nsecret = \"in-the-file-is-wrong\"\n",
    )
    .unwrap();
    let out = lp.run(&["render", &issue("toml.md")]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("server.secret"), "{}", stderr(&out));
}
