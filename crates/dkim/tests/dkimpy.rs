//! Signatures checked by an independent verifier: Python's dkimpy (with
//! PyNaCl for ed25519-sha256), fed the keys' DNS records as the test
//! generates them. Where dkimpy cannot be had the tests print
//! `skipped: …`, unless `LP_TEST_REQUIRE` asks for `dkim` (or `all`).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::SystemTime;

use letterpress_dkim::{Ed25519Key, RsaKey, Signer};

const DOMAIN: &str = "news.example.com";
const RSA_SELECTOR: &str = "lp2026";
const ED25519_SELECTOR: &str = "lp2026e";

/// letterpress's contract (GUIDE.md, "Email on the wire").
const HEADERS: &[&str] = &[
    "From",
    "To",
    "Subject",
    "Date",
    "Message-ID",
    "Reply-To",
    "List-Id",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
    "Feedback-ID",
    "MIME-Version",
    "Content-Type",
];

// ---------------------------------------------------------------------------
// LOCAL STAND-IN for the shared test kit's `LP_TEST_REQUIRE` switch (being
// built in tests/support by another change); replace these two functions
// with the kit's once it lands.

/// Whether `LP_TEST_REQUIRE` (a comma- or space-separated list) names
/// `area` or `all`.
fn required(area: &str) -> bool {
    std::env::var("LP_TEST_REQUIRE").is_ok_and(|v| {
        v.split(|c: char| c == ',' || c.is_whitespace())
            .any(|a| a == area || a == "all")
    })
}

/// Skips (printing `skipped: …` past the test harness's capture) or, when
/// the area is required, fails.
fn skip(area: &str, why: &str) {
    assert!(
        !required(area),
        "LP_TEST_REQUIRE asks for {area}, but {why}"
    );
    let _ = writeln!(std::io::stderr(), "skipped: {why}");
}
// ---------------------------------------------------------------------------

/// A `PYTHONPATH` under which `import dkim, nacl` works: none needed, or
/// `target/pydeps`, installed there with pip when missing (once per test
/// binary, so parallel tests do not run pip into one folder together).
fn dkimpy() -> Result<Option<PathBuf>, String> {
    static FOUND: OnceLock<Result<Option<PathBuf>, String>> = OnceLock::new();
    FOUND.get_or_init(find_dkimpy).clone()
}

fn find_dkimpy() -> Result<Option<PathBuf>, String> {
    let has = |pythonpath: Option<&Path>| {
        let mut c = Command::new("python3");
        c.args(["-c", "import dkim, nacl"]);
        if let Some(p) = pythonpath {
            c.env("PYTHONPATH", p);
        }
        c.output().is_ok_and(|o| o.status.success())
    };
    if has(None) {
        return Ok(None);
    }
    let target = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .ok_or("no target folder")?
        .join("pydeps");
    if has(Some(&target)) {
        return Ok(Some(target));
    }
    let out = Command::new("python3")
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--upgrade",
            "--target",
        ])
        .arg(&target)
        .args(["dkimpy", "pynacl"])
        .output()
        .map_err(|e| format!("dkimpy: cannot run python3: {e}"))?;
    if has(Some(&target)) {
        Ok(Some(target))
    } else {
        Err(format!(
            "dkimpy (with PyNaCl) is not installed and pip could not install it: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Verifies every DKIM-Signature of each message (argv[2:]) with the
/// records in argv[1] (`name<TAB>record` lines), one line per signature:
/// `FILE INDEX ALGORITHM VERIFIED|FAILED`.
const VERIFY_PY: &str = r#"
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
for path in sys.argv[2:]:
    msg = open(path, "rb").read()
    d = dkim.DKIM(msg, logger=logging.getLogger("dkim"))
    count = sum(1 for (k, _) in d.headers if k.lower() == b"dkim-signature")
    if count == 0:
        print(path, "-", "-", "NONE")
    for i in range(count):
        try:
            ok = d.verify(idx=i, dnsfunc=dns)
        except dkim.DKIMException as e:
            logging.getLogger("dkim").error("signature %d: %s", i, e)
            ok = False
        a = d.signature_fields.get(b"a", b"?").decode()
        print(path, i, a, "VERIFIED" if ok else "FAILED")
"#;

struct Keys {
    signer: Signer,
    records: String,
}

fn keys() -> Keys {
    let rsa = RsaKey::generate().expect("RSA key");
    let ed = Ed25519Key::generate().expect("Ed25519 key");
    // Through PEM and back, as letterpress loads them.
    let rsa = RsaKey::from_pem(&rsa.to_pkcs8_pem().expect("PEM")).expect("reload RSA");
    let ed = Ed25519Key::from_pem(&ed.to_pkcs8_pem().expect("PEM")).expect("reload Ed25519");
    let records = format!(
        "{RSA_SELECTOR}._domainkey.{DOMAIN}\t{}\n{ED25519_SELECTOR}._domainkey.{DOMAIN}\t{}\n",
        rsa.dns_record().expect("RSA record"),
        ed.dns_record()
    );
    let signer = Signer::new(DOMAIN, RSA_SELECTOR, rsa, HEADERS)
        .and_then(|s| s.co_sign(ED25519_SELECTOR, ed))
        .expect("signer");
    Keys { signer, records }
}

/// dkimpy's verdicts: per message, one `(index, algorithm, verified)` per
/// signature, and its debug log (which says why a signature failed).
struct Verdicts {
    messages: Vec<Vec<(usize, String, bool)>>,
    log: String,
}

/// Runs dkimpy over the messages; `None` when skipped.
fn verify(records: &str, messages: &[Vec<u8>]) -> Option<Verdicts> {
    let pythonpath = match dkimpy() {
        Ok(p) => p,
        Err(why) => {
            skip("dkim", &why);
            return None;
        }
    };
    let dir = tempdir();
    let records_path = dir.join("records.tsv");
    std::fs::write(&records_path, records).expect("write records");
    let paths: Vec<PathBuf> = messages
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let p = dir.join(format!("m{i}.eml"));
            std::fs::write(&p, m).expect("write message");
            p
        })
        .collect();
    let mut c = Command::new("python3");
    c.arg("-c").arg(VERIFY_PY).arg(&records_path).args(&paths);
    if let Some(p) = &pythonpath {
        c.env("PYTHONPATH", p);
    }
    let out = c.output().expect("run python3");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "dkimpy failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut results = vec![Vec::new(); messages.len()];
    for line in stdout.lines() {
        let mut f = line.split(' ');
        let (Some(path), Some(index), Some(alg), Some(verdict)) =
            (f.next(), f.next(), f.next(), f.next())
        else {
            panic!("unexpected dkimpy output {line:?}");
        };
        let i = paths
            .iter()
            .position(|p| p.to_str() == Some(path))
            .expect("a message of ours");
        if verdict != "NONE" {
            results[i].push((
                index.parse().expect("index"),
                alg.to_string(),
                verdict == "VERIFIED",
            ));
        }
    }
    std::fs::remove_dir_all(&dir).ok();
    Some(Verdicts {
        messages: results,
        log: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

fn tempdir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "dkimpy-{}-{}",
        std::process::id(),
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// Header fields as letterpress writes them, with folding.
fn headers(extra: &str) -> String {
    format!(
        "From: Rust Trends <news@{DOMAIN}>\r\n\
         To: =?utf-8?q?Ann_M=C3=BCller-L=C3=BCdenscheidt_von_und_zu_Hohenzollern?=\r\n \
         =?utf-8?q?-Sigmaringen?= <ann@x.example>\r\n\
         Subject: =?utf-8?q?Signed=2C_sealed=2C_delivered=3A_a_rather_long_subject_?=\r\n\
         \t=?utf-8?q?line_with_Gr=C3=BC=C3=9Fe_that_gets_folded?=\r\n\
         Date: Tue, 14 Nov 2023 22:13:20 +0000\r\n\
         Message-ID: <0c1f4f0e5a3b4c2d9e8f7a6b5c4d3e2f@{DOMAIN}>\r\n\
         List-Id: Rust Trends <{DOMAIN}>\r\n\
         List-Unsubscribe: <https://{DOMAIN}/u/AbCdEfGhIjKlMnOpQrStUvWxYz0123456789>,\r\n \
         <mailto:unsubscribe@{DOMAIN}?subject=unsubscribe>\r\n\
         List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n\
         Feedback-ID: signed:{DOMAIN}:newsletter:letterpress\r\n\
         Precedence: bulk\r\n\
         {extra}\
         MIME-Version: 1.0\r\n\
         Content-Type: multipart/alternative; boundary=\"=_abc123\"\r\n"
    )
}

/// A multipart body with what relaxed canonicalisation has to get right:
/// 8-bit UTF-8, runs of spaces and tabs, trailing WSP, long lines, empty
/// lines inside and at the end.
fn body() -> String {
    let long = "Rust ".repeat(180);
    format!(
        "--=_abc123\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\
         Content-Transfer-Encoding: 8bit\r\n\
         \r\n\
         Hallo Ann,  schöne Grüße aus Köln! \t\r\n\
         \r\n\
         \tIndented\twith  tabs   and spaces.  \r\n\
         {long}\r\n\
         Emoji: 🦀 — «ça marche»\r\n\
         \r\n\
         --=_abc123\r\n\
         Content-Type: text/html; charset=utf-8\r\n\
         Content-Transfer-Encoding: 8bit\r\n\
         \r\n\
         <html>\r\n    <body>\r\n        <p>Grüße</p>   \r\n    </body>\r\n</html>\r\n\
         --=_abc123--\r\n\
         \r\n\
         \r\n\
         \r\n"
    )
}

fn signed(signer: &Signer, message: &[u8]) -> Vec<u8> {
    let header = signer.sign(message, SystemTime::now()).expect("sign");
    let mut out = header.into_bytes();
    out.extend_from_slice(message);
    out
}

fn message(extra_headers: &str, body: &str) -> Vec<u8> {
    format!("{}\r\n{body}", headers(extra_headers)).into_bytes()
}

fn assert_both_verify(v: &Verdicts, i: usize, what: &str) {
    assert_eq!(
        v.messages[i],
        [
            (0, "rsa-sha256".to_string(), true),
            (1, "ed25519-sha256".to_string(), true)
        ],
        "{what}: dkimpy verifies rsa-sha256 (topmost) and ed25519-sha256\n{}",
        v.log
    );
}

#[test]
fn dkimpy_verifies_both_signatures() {
    let k = keys();
    let cases: [(&str, Vec<u8>); 5] = [
        ("multipart, folded headers, UTF-8", message("", &body())),
        (
            "with Reply-To",
            message("Reply-To: Editors <editors@x.example>\r\n", &body()),
        ),
        ("empty body", message("", "")),
        ("body of empty lines", message("", "\r\n\r\n \r\n")),
        ("last line without CRLF", message("", "no line end  here")),
    ];
    let messages: Vec<Vec<u8>> = cases.iter().map(|(_, m)| signed(&k.signer, m)).collect();
    let Some(verdicts) = verify(&k.records, &messages) else {
        return;
    };
    for (i, (what, _)) in cases.iter().enumerate() {
        assert_both_verify(&verdicts, i, what);
    }
    // h= has Reply-To only where the message has it.
    let with = String::from_utf8_lossy(&messages[1]).to_ascii_lowercase();
    let without = String::from_utf8_lossy(&messages[0]).to_ascii_lowercase();
    assert!(with.contains(":reply-to:"), "{with}");
    assert!(!without.contains("reply-to"), "{without}");
}

#[test]
fn dkimpy_fails_a_changed_message_and_passes_a_refolded_one() {
    let k = keys();
    let original = signed(&k.signer, &message("", &body()));
    let text = String::from_utf8(original.clone()).expect("UTF-8");

    // One body byte flipped: the body hash no longer matches.
    let mut body_flipped = original.clone();
    let at = text.find("Hallo Ann").expect("body text") + 1;
    body_flipped[at] ^= 0x01;
    // A signed header changed.
    let date_changed = text
        .replacen("Date: Tue, 14 Nov 2023", "Date: Wed, 15 Nov 2023", 1)
        .into_bytes();
    // What relaxed canonicalisation is for: a relay that refolds headers,
    // adds WSP and drops trailing empty lines changes no verdict.
    let refolded = text
        .replacen("List-Id: Rust Trends", "List-Id:   Rust\r\n\t  Trends", 1)
        .replacen("Subject: ", "Subject:\t", 1)
        .replacen("Hallo Ann,  schöne", "Hallo Ann,\t schöne", 1)
        .replacen("--=_abc123--\r\n\r\n\r\n\r\n", "--=_abc123--  \r\n", 1)
        .into_bytes();

    let Some(v) = verify(
        &k.records,
        &[original, body_flipped, date_changed, refolded],
    ) else {
        return;
    };
    assert_both_verify(&v, 0, "as signed");
    for (i, what) in [(1, "a body byte flipped"), (2, "the Date changed")] {
        assert_eq!(v.messages[i].len(), 2, "{what}: two signatures");
        assert!(
            v.messages[i].iter().all(|(_, _, ok)| !ok),
            "{what}: dkimpy must fail both signatures: {:?}",
            v.messages[i]
        );
    }
    assert_both_verify(&v, 3, "refolded and re-spaced");
}
