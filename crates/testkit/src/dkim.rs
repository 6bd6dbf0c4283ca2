//! Python's dkimpy, the independent DKIM verifier: found on the system
//! Python, in the user site, or in `<cargo target dir>/pydeps` (where
//! `.ci/run` installs it, and where the finder installs it with pip when it
//! can).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::require::{self, Dependency};

/// A Python that can `import dkim`.
pub struct Dkimpy {
    /// `PYTHONPATH` for it, when dkimpy is not on the default path.
    pythonpath: Option<PathBuf>,
}

const VERIFY_PY: &str = r#"
import logging, sys, dkim
logging.basicConfig(level=logging.DEBUG, stream=sys.stderr)
msg = open(sys.argv[1], "rb").read()
record = open(sys.argv[2], "rb").read()
d = dkim.DKIM(msg, logger=logging.getLogger("dkim"))
ok = d.verify(dnsfunc=lambda name, timeout=5: record)
print("VERIFIED" if ok else "FAILED")
"#;

impl Dkimpy {
    /// Finds dkimpy, installing it with pip into `<target>/pydeps` when it
    /// is nowhere yet. When that fails the dependency is missing
    /// ([`require::missing`]: the test fails under `LP_TEST_REQUIRE=dkim`,
    /// else it says `skipped:` and gets `None`).
    pub fn find() -> Option<Dkimpy> {
        match find() {
            Ok(pythonpath) => Some(Dkimpy { pythonpath }),
            Err(why) => {
                require::missing(Dependency::Dkim, &format!("DKIM verification: {why}"));
                None
            }
        }
    }

    /// Verifies the signature of `message` against the DNS TXT record
    /// `record` (`v=DKIM1; k=rsa; p=…`). `Ok` or `Err` carry what dkimpy
    /// printed, its debug log included.
    pub fn verify(&self, message: &[u8], record: &str) -> Result<String, String> {
        let dir = tempfile::tempdir().expect("temp dir");
        let (msg_path, record_path) = (dir.path().join("m.eml"), dir.path().join("dns.txt"));
        std::fs::write(&msg_path, message).expect("write the message");
        std::fs::write(&record_path, record).expect("write the record");
        let mut c = Command::new("python3");
        c.arg("-c").arg(VERIFY_PY).arg(&msg_path).arg(&record_path);
        if let Some(p) = &self.pythonpath {
            c.env("PYTHONPATH", p);
        }
        let out = c.output().expect("run python3");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let log = format!("{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
        if stdout.contains("VERIFIED") {
            Ok(log)
        } else {
            Err(log)
        }
    }
}

/// Whether `python3` imports dkim with this `PYTHONPATH`.
fn importable(pythonpath: Option<&Path>) -> bool {
    let mut c = Command::new("python3");
    c.args(["-c", "import dkim"]);
    if let Some(p) = pythonpath {
        c.env("PYTHONPATH", p);
    }
    c.output().map(|o| o.status.success()).unwrap_or(false)
}

/// The cargo target directory this test binary was built into
/// (`<target>/debug/deps/NAME`): the folder that holds `CACHEDIR.TAG`.
fn target_dir() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    exe.ancestors()
        .skip(1)
        .find(|d| d.join("CACHEDIR.TAG").is_file())
        .or_else(|| exe.ancestors().nth(3))
        .map(Path::to_path_buf)
}

/// `Ok(None)`: on the default path; `Ok(Some(dir))`: in `dir`.
fn find() -> Result<Option<PathBuf>, String> {
    if importable(None) {
        return Ok(None);
    }
    let target = target_dir().ok_or("no cargo target folder")?.join("pydeps");
    if importable(Some(&target)) {
        return Ok(Some(target));
    }
    let out = Command::new("python3")
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--target",
        ])
        .arg(&target)
        .arg("dkimpy")
        .output()
        .map_err(|e| format!("cannot run python3: {e}"))?;
    if importable(Some(&target)) {
        Ok(Some(target))
    } else {
        Err(format!(
            "dkimpy is not installed and pip could not install it into {}: {}",
            target.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}
