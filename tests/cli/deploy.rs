//! The systemd units `docs/deploy.md` ships, as systemd itself reads them:
//! `systemd-analyze verify` finds no unknown or misspelt setting, and
//! `systemd-analyze security` rates the hardened `serve` unit's exposure
//! no worse than "OK".

use std::path::PathBuf;
use std::process::Command;

use letterpress_testkit::repo;
use letterpress_testkit::require::{self, Dependency};

const UNITS: [&str; 3] = [
    "letterpress.service",
    "letterpress-due.service",
    "letterpress-due.timer",
];

fn systemd_analyze() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/bin")])
        .map(|d| d.join("systemd-analyze"))
        .find(|p| p.is_file());
    if found.is_none() {
        require::missing(Dependency::Systemd, "systemd-analyze is not installed");
    }
    found
}

#[test]
fn the_documented_systemd_units_verify_and_are_hardened() {
    let Some(analyze) = systemd_analyze() else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    for unit in UNITS {
        let text = std::fs::read_to_string(repo().join("docs/deploy").join(unit)).expect(unit);
        // verify checks that ExecStart's program exists: the one built here
        // stands in for the installed /usr/local/bin/letterpress.
        let text = text.replace(
            "/usr/local/bin/letterpress",
            env!("CARGO_BIN_EXE_letterpress"),
        );
        std::fs::write(dir.path().join(unit), text).expect("write the unit");
    }
    let out = Command::new(&analyze)
        .arg("verify")
        .arg("--man=no")
        .args(UNITS.map(|u| dir.path().join(u)))
        .output()
        .expect("run systemd-analyze verify");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stderr.trim().is_empty(),
        "systemd-analyze verify: {}\n{stderr}",
        out.status
    );
    let out = Command::new(&analyze)
        .args(["security", "--offline=true", "--threshold=20"])
        .arg(dir.path().join("letterpress.service"))
        .output()
        .expect("run systemd-analyze security");
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && report.contains("Overall exposure level") && report.contains(" OK"),
        "systemd-analyze security: {}\n{report}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}
