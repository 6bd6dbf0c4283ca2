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

/// Issue #10, point 11: a secret variable that is set but blank is an
/// error naming it, never a reason to generate a new key.
#[tokio::test]
async fn a_blank_secret_variable_is_an_error_naming_it() {
    let toml = issue("toml.md");
    // (variable, a command that reads it)
    let cases: [(&str, &[&str]); 4] = [
        ("LETTERPRESS_SERVER__SECRET", &["subscribers", "list"]),
        (
            "LETTERPRESS_SERVER__PREVIOUS_SECRETS",
            &["subscribers", "list"],
        ),
        ("LETTERPRESS_SERVER__WEBHOOK_SECRET", &["serve"]),
        (
            "LETTERPRESS_DELIVERY__SMTP_PASSWORD",
            &["send", &toml, "--to", "a@example.com"],
        ),
    ];
    for (var, args) in cases {
        for blank in ["", "  "] {
            let mut lp = lp();
            lp.set("LETTERPRESS_DELIVERY__TRANSPORT", "smtp")
                .set("LETTERPRESS_DELIVERY__SMTP_URL", "smtp://news@127.0.0.1:1")
                .set(var, blank);
            let out = lp.run(args).await;
            assert_eq!(
                out.status.code(),
                Some(1),
                "{var}={blank:?}: {}",
                stderr(&out)
            );
            assert!(
                stderr(&out).contains(var) && stderr(&out).contains("blank"),
                "{var}={blank:?}: {}",
                stderr(&out)
            );
            assert!(
                !lp.path("secret.key").exists(),
                "{var}={blank:?}: no key is generated"
            );
        }
    }
}

/// Issue #10, point 11: a password written into `delivery.smtp_url` in
/// the config file is refused like any other secret there.
#[tokio::test]
async fn a_password_in_the_smtp_url_of_the_config_file_is_refused() {
    let lp = lp();
    for url in [
        "smtp://news:hunter2@mail.example.com:587?tls=required",
        // Does not parse (an unescaped `/` in the password): still refused.
        "smtp://news:hun/ter2@mail.example.com:587",
    ] {
        std::fs::write(
            lp.path("letterpress.toml"),
            format!("[delivery]\nsmtp_url = \"{url}\"\n"),
        )
        .unwrap();
        let out = lp.run(&["render", &issue("toml.md")]).await;
        assert_eq!(out.status.code(), Some(1), "{url}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(
            err.contains("delivery.smtp_url")
                && err.contains("LETTERPRESS_DELIVERY__SMTP_PASSWORD")
                && !err.contains("hunter2")
                && !err.contains("hun/ter2"),
            "{url}: {err}"
        );
    }
    // A user name alone is fine.
    std::fs::write(
        lp.path("letterpress.toml"),
        "[delivery]\nsmtp_url = \"smtp://news@mail.example.com:587?tls=required\"\n",
    )
    .unwrap();
    lp.ok(&["render", &issue("toml.md"), "--out", "out"]).await;
}

/// Issue #10, point 11: every URL an error prints is redacted, one that
/// does not parse included.
#[tokio::test]
async fn urls_in_errors_never_show_the_password() {
    let lp = lp();
    for url in [
        "smtp://news:hunter2@[bad",
        "smtp://news:hunter2@mail.example.com?tls=bogus",
        "smtp://news:hunter2@mail.example.com:99999",
        "ftp://news:hunter2@mail.example.com",
    ] {
        let out = lp
            .cmd(&["send", &issue("toml.md"), "--to", "a@example.com"])
            .env("LETTERPRESS_DELIVERY__TRANSPORT", "smtp")
            .env("LETTERPRESS_DELIVERY__SMTP_URL", url)
            .output()
            .await
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{url}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(
            err.contains("delivery.smtp_url")
                && err.contains("news:***@")
                && !err.contains("hunter2"),
            "{url}: {err}"
        );
    }
    for url in [
        "postgres://bob:hunter2@db example/lp",
        "postgres://bob:hunter2@db.example:99999/lp",
        "mysql://bob:hunter2@db.example/lp",
    ] {
        let out = lp
            .cmd(&["subscribers", "list"])
            .env("LETTERPRESS_DATABASE__URL", url)
            .output()
            .await
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{url}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(
            err.contains("database.url") && !err.contains("hunter2"),
            "{url}: {err}"
        );
    }
}

/// Issue #10, point 15: a short retired secret is not reported as
/// `server.secret` (the current one is fine).
#[tokio::test]
async fn a_short_previous_secret_is_not_reported_as_server_secret() {
    let lp = lp();
    let out = lp
        .cmd(&["subscribers", "list"])
        .env(
            "LETTERPRESS_SERVER__PREVIOUS_SECRETS",
            "old-but-long-enough-secret-0123456789abcdef,tiny",
        )
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("4 bytes"), "{err}");
    assert!(
        !err.contains("server.secret "),
        "names the wrong key: {err}"
    );
    assert!(
        err.contains("server.previous_secrets entry 2"),
        "names the entry at fault: {err}"
    );
}

/// Issue #13, point 4: the bounce mailbox's password is a secret like the
/// SMTP one: refused in `bounces.imap_url` and as `bounces.imap_password`
/// in the config file, refused blank in the environment, and asked for by
/// name when missing; `bounces` without a mailbox says which key to set.
#[tokio::test]
async fn the_bounce_mailbox_password_is_a_secret() {
    let lp = lp();
    for (toml, key) in [
        (
            "[bounces]\nimap_url = \"imaps://bounces:hunter2@mail.example.com/INBOX\"\n",
            "bounces.imap_url",
        ),
        (
            "[bounces]\nimap_password = \"hunter2\"\n",
            "bounces.imap_password",
        ),
    ] {
        std::fs::write(lp.path("letterpress.toml"), toml).unwrap();
        let out = lp.run(&["bounces"]).await;
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{toml}: {err}");
        assert!(
            err.contains(key)
                && err.contains("LETTERPRESS_BOUNCES__IMAP_PASSWORD")
                && !err.contains("hunter2"),
            "{toml}: {err}"
        );
    }
    std::fs::write(
        lp.path("letterpress.toml"),
        "[bounces]\nimap_url = \"imaps://bounces@127.0.0.1:1/INBOX\"\n",
    )
    .unwrap();
    let out = lp.run(&["bounces"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("LETTERPRESS_BOUNCES__IMAP_PASSWORD"),
        "{}",
        stderr(&out)
    );
    // serve too, at start rather than on its first pass.
    let out = tokio::time::timeout(letterpress_testkit::WAIT, lp.run(&["serve"]))
        .await
        .expect("serve stops at once");
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("LETTERPRESS_BOUNCES__IMAP_PASSWORD"),
        "{}",
        stderr(&out)
    );
    let mut blank = crate::lp();
    blank.set("LETTERPRESS_BOUNCES__IMAP_PASSWORD", " ");
    let out = blank.run(&["bounces"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("LETTERPRESS_BOUNCES__IMAP_PASSWORD")
            && stderr(&out).contains("blank"),
        "{}",
        stderr(&out)
    );
    let out = crate::lp().run(&["bounces"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("bounces.imap_url is not set"),
        "{}",
        stderr(&out)
    );
}

/// Issue #13, point 4: a done or ignored folder that is the folder read
/// would bring every message back under a new UID on every run: refused
/// before anything is read, naming the key.
#[tokio::test]
async fn the_bounce_folders_must_differ_from_the_one_read() {
    for (var, folder) in [
        ("LETTERPRESS_BOUNCES__DONE_FOLDER", "inbox"),
        ("LETTERPRESS_BOUNCES__IGNORED_FOLDER", "INBOX"),
    ] {
        let mut lp = lp();
        lp.set(
            "LETTERPRESS_BOUNCES__IMAP_URL",
            "imaps://b@127.0.0.1:1/INBOX",
        )
        .set("LETTERPRESS_BOUNCES__IMAP_PASSWORD", "x")
        .set(var, folder);
        let out = lp.run(&["bounces"]).await;
        let err = stderr(&out);
        let key = var
            .trim_start_matches("LETTERPRESS_BOUNCES__")
            .to_lowercase();
        assert_eq!(out.status.code(), Some(1), "{var}: {err}");
        assert!(err.contains(&format!("bounces.{key}")), "{var}: {err}");
        assert!(!err.contains("connect"), "refused before connecting: {err}");
    }
}

/// Issue #13: the provider webhooks' secrets never come from the file, and
/// a key `serve` cannot use stops it at once, naming the key.
#[tokio::test]
async fn provider_webhook_secrets_come_from_the_environment() {
    let lp = lp();
    for (section, key, variable) in [
        (
            "postmark",
            "password",
            "LETTERPRESS_WEBHOOKS__POSTMARK__PASSWORD",
        ),
        (
            "mailgun",
            "signing_key",
            "LETTERPRESS_WEBHOOKS__MAILGUN__SIGNING_KEY",
        ),
        ("resend", "secret", "LETTERPRESS_WEBHOOKS__RESEND__SECRET"),
    ] {
        std::fs::write(
            lp.path("letterpress.toml"),
            format!("[webhooks.{section}]\n{key} = \"in-the-file-0123\"\n"),
        )
        .unwrap();
        let out = lp.run(&["render", &issue("toml.md")]).await;
        assert_eq!(out.status.code(), Some(1), "{section}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(
            err.contains(&format!("webhooks.{section}.{key}"))
                && err.contains(variable)
                && !err.contains("in-the-file-0123"),
            "{section}: {err}"
        );
    }
    for (file, env, names) in [
        (
            "[webhooks.sendgrid]\npublic_key = \"bm90IGEga2V5\"\n",
            None,
            "webhooks.sendgrid.public_key",
        ),
        (
            "",
            Some(("LETTERPRESS_WEBHOOKS__RESEND__SECRET", "not-whsec")),
            "webhooks.resend.secret",
        ),
        (
            "[webhooks.ses]\ntopic_arns = [\"arn:aws:sns:eu-west-1:1:t\"]\ncertificate_file = \"nope.pem\"\n",
            None,
            "webhooks.ses.certificate_file",
        ),
        (
            "[webhooks.postmark]\nusername = \"postmark\"\n",
            None,
            "LETTERPRESS_WEBHOOKS__POSTMARK__PASSWORD",
        ),
    ] {
        std::fs::write(lp.path("letterpress.toml"), file).unwrap();
        let mut cmd = lp.cmd(&["serve"]);
        if let Some((k, v)) = env {
            cmd.env(k, v);
        }
        let out = cmd.output().await.unwrap();
        assert_eq!(out.status.code(), Some(1), "{names}: {}", stderr(&out));
        assert!(stderr(&out).contains(names), "{names}: {}", stderr(&out));
    }
}
