//! Python's dkimpy, the independent DKIM verifier: found on the system
//! Python, in the user site, or in `<cargo target dir>/pydeps` (where
//! `.ci/run` installs it, and where the finder installs it with pip when it
//! can). With PyNaCl beside it, it also verifies ed25519-sha256 (RFC 8463).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::require::{self, Dependency};

/// A Python that can `import dkim` (and `nacl`, when found by
/// [`Dkimpy::find_with_ed25519`]).
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

/// Every DKIM-Signature of argv[2], topmost first, against the records in
/// argv[1] (`name<TAB>record` lines): `INDEX ALGORITHM VERIFIED|FAILED`.
const VERIFY_EACH_PY: &str = r#"
import logging, sys, dkim
logging.basicConfig(level=logging.DEBUG, stream=sys.stderr)
records = {}
for line in open(sys.argv[1], encoding="ascii"):
    name, record = line.rstrip("\n").split("\t", 1)
    records[name] = record.encode("ascii")
def dns(name, timeout=5):
    if isinstance(name, bytes):
        name = name.decode("ascii")
    return records.get(name.rstrip("."))
d = dkim.DKIM(open(sys.argv[2], "rb").read(), logger=logging.getLogger("dkim"))
count = sum(1 for (k, _) in d.headers if k.lower() == b"dkim-signature")
for i in range(count):
    try:
        ok = d.verify(idx=i, dnsfunc=dns)
    except dkim.DKIMException as e:
        logging.getLogger("dkim").error("signature %d: %s", i, e)
        ok = False
    print(i, d.signature_fields.get(b"a", b"?").decode(), "VERIFIED" if ok else "FAILED")
"#;

/// dkimpy's verdict on each DKIM-Signature of a message.
#[derive(Debug)]
pub struct Verdicts {
    /// `(algorithm, verified)` per signature, topmost first.
    pub signatures: Vec<(String, bool)>,
    /// What dkimpy printed, its debug log included (why one failed).
    pub log: String,
}

impl Dkimpy {
    /// Finds dkimpy, installing it with pip into `<target>/pydeps` when it
    /// is nowhere yet. When that fails the dependency is missing
    /// ([`require::missing`]: the test fails under `LP_TEST_REQUIRE=dkim`,
    /// else it says `skipped:` and gets `None`).
    pub fn find() -> Option<Dkimpy> {
        Self::found(find(&["dkim"]))
    }

    /// [`Dkimpy::find`] for ed25519-sha256 too: dkimpy and PyNaCl, both
    /// installed with pip into `<target>/pydeps` when missing.
    pub fn find_with_ed25519() -> Option<Dkimpy> {
        Self::found(find(&["dkim", "nacl"]))
    }

    fn found(found: Result<Option<PathBuf>, String>) -> Option<Dkimpy> {
        match found {
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

    /// Verifies each DKIM-Signature of `message` on its own, with the DNS
    /// TXT records `records` (`(name, record)`, e.g.
    /// `("sel._domainkey.example.test", "v=DKIM1; k=ed25519; p=…")`).
    pub fn verify_each(&self, message: &[u8], records: &[(&str, &str)]) -> Verdicts {
        let dir = tempfile::tempdir().expect("temp dir");
        let (msg_path, records_path) = (dir.path().join("m.eml"), dir.path().join("dns.tsv"));
        std::fs::write(&msg_path, message).expect("write the message");
        let records: String = records
            .iter()
            .map(|(name, record)| format!("{name}\t{record}\n"))
            .collect();
        std::fs::write(&records_path, records).expect("write the records");
        let mut c = Command::new("python3");
        c.arg("-c")
            .arg(VERIFY_EACH_PY)
            .arg(&records_path)
            .arg(&msg_path);
        if let Some(p) = &self.pythonpath {
            c.env("PYTHONPATH", p);
        }
        let out = c.output().expect("run python3");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let signatures = stdout
            .lines()
            .filter_map(|line| {
                let mut f = line.split(' ').skip(1);
                Some((f.next()?.to_string(), f.next()? == "VERIFIED"))
            })
            .collect();
        Verdicts {
            signatures,
            log: format!("{stdout}\n{}", String::from_utf8_lossy(&out.stderr)),
        }
    }
}

/// Whether `python3` imports `modules` with this `PYTHONPATH`.
fn importable(modules: &[&str], pythonpath: Option<&Path>) -> bool {
    let mut c = Command::new("python3");
    c.args(["-c", &format!("import {}", modules.join(", "))]);
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

/// Where `modules` import: `Ok(None)`: on the default path;
/// `Ok(Some(dir))`: in `dir`.
fn find(modules: &[&str]) -> Result<Option<PathBuf>, String> {
    if importable(modules, None) {
        return Ok(None);
    }
    let target = target_dir().ok_or("no cargo target folder")?.join("pydeps");
    if importable(modules, Some(&target)) {
        return Ok(Some(target));
    }
    // Both packages, whichever is missing: pip installs what is not there
    // and leaves the rest (--upgrade would replace a dkimpy that other
    // tests may be importing).
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
        .args(["dkimpy", "pynacl"])
        .output()
        .map_err(|e| format!("cannot run python3: {e}"))?;
    if importable(modules, Some(&target)) {
        Ok(Some(target))
    } else {
        Err(format!(
            "dkimpy (with PyNaCl for ed25519) is not installed and pip could not install it into {}: {}",
            target.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}
