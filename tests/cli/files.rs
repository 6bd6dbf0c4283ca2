//! What letterpress writes to disk is its operator's alone: the data
//! directory and the outbox are created 0700, the database and the token
//! secret 0600, whatever the umask.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::{issue, lp, stderr};

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

/// Issue #10, point 12.
#[tokio::test]
async fn the_data_directory_outbox_and_database_are_private() {
    let mut lp = lp();
    let db = lp.path("data/lp.db");
    lp.set(
        "LETTERPRESS_DATABASE__URL",
        &format!("sqlite://{}", db.display()),
    );
    let run = async |args: &[&str]| {
        let mut cmd = lp.cmd(args);
        // A permissive umask, as on many servers: the modes must not depend on it.
        // SAFETY: umask is async-signal-safe and touches no memory.
        unsafe {
            cmd.pre_exec(|| {
                libc::umask(0o022);
                Ok(())
            });
        }
        // Without a secret in the environment one is generated into the data directory.
        let out = cmd
            .env_remove("LETTERPRESS_SERVER__SECRET")
            .output()
            .await
            .unwrap();
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    };
    run(&["subscribers", "add", "a@example.com"]).await;
    assert_eq!(mode(&lp.path("data")), 0o700, "data directory");
    assert_eq!(mode(&db), 0o600, "database");
    assert_eq!(mode(&lp.path("data/secret.key")), 0o600, "token secret");
    for journal in ["data/lp.db-wal", "data/lp.db-shm"] {
        if lp.path(journal).exists() {
            assert_eq!(mode(&lp.path(journal)), 0o600, "{journal}");
        }
    }

    run(&["send", &issue("toml.md"), "--to", "a@example.com"]).await;
    assert_eq!(mode(&lp.path("outbox")), 0o700, "outbox");
    for entry in std::fs::read_dir(lp.path("outbox")).unwrap() {
        let path = entry.unwrap().path();
        assert_eq!(mode(&path), 0o700, "{}", path.display());
    }
}

/// An existing database keeps the mode its operator gave it, with a
/// warning when other users may read it.
#[tokio::test]
async fn an_existing_database_open_to_others_is_kept_with_a_warning() {
    let lp = lp();
    lp.ok(&["subscribers", "add", "a@example.com"]).await;
    let db = lp.path("lp.db");
    assert!(!lp.ok(&["subscribers", "list"]).await.contains("chmod"));
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = lp.ok(&["subscribers", "list"]).await;
    assert!(
        err.contains("open to other users") && err.contains("chmod 600"),
        "{err}"
    );
    assert_eq!(mode(&db), 0o644, "left as it was");
}

/// `backup` copies the database while `serve` has it open: a file of its
/// owner's only, that opens as a database with the same subscribers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_copies_the_live_database_privately() {
    let lp = lp();
    lp.add(&["a@example.com", "b@example.com"]).await;
    let served = lp.serve().await;
    let copy = lp.path("backup/lp-copy.db");
    std::fs::create_dir_all(copy.parent().unwrap()).unwrap();
    lp.ok(&["backup", copy.to_str().unwrap()]).await;
    served.stop_ok().await;
    assert_eq!(mode(&copy), 0o600);
    let mut restored = letterpress_testkit::Lp::new(env!("CARGO_BIN_EXE_letterpress"));
    restored.set(
        "LETTERPRESS_DATABASE__URL",
        &format!("sqlite://{}", copy.display()),
    );
    assert_eq!(restored.subscribers().await.len(), 2);
    // Never over an existing file.
    let out = lp.run(&["backup", copy.to_str().unwrap()]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("exists"), "{}", stderr(&out));
}
