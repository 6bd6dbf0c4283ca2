//! A private Dovecot IMAP server (Debian's `dovecot-imapd`) for the bounce
//! mailbox tests: started by the test on loopback ports with a config of
//! its own in a temporary folder, one `passwd-file` user, a Maildir under
//! that folder, and TLS with a CA and certificate the test makes (rcgen).
//! Messages are delivered by writing them into the Maildir, as an MDA
//! would; what the tests check (which folder a message is in, its flags) is
//! read back from the Maildir too.
//!
//! [`Dovecot::start`] returns `None` after [`require::missing`] when the
//! binary is not installed or will not start, so a test skips (or fails
//! where `LP_TEST_REQUIRE` names `dovecot`).

use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::require::{self, Dependency};

const BINARY: &str = "/usr/sbin/dovecot";

/// The one mailbox user.
pub const IMAP_USER: &str = "bounces";
/// Its password.
pub const IMAP_PASSWORD: &str = "imap-test-password";

/// A running Dovecot; stopped (SIGTERM, then waited for) on drop.
pub struct Dovecot {
    dir: tempfile::TempDir,
    child: Child,
    imap_port: u16,
    imaps_port: u16,
    mail_uid: u32,
    mail_gid: u32,
    delivered: AtomicU32,
}

/// One message as the Maildir holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// The raw message.
    pub raw: Vec<u8>,
    /// The Maildir flag letters (`S` seen, `T` deleted, `a`.. keywords).
    pub flags: String,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

impl Dovecot {
    /// Starts a private instance, or `None` (after [`require::missing`])
    /// when Dovecot is not installed or does not come up.
    pub fn start() -> Option<Dovecot> {
        if !Path::new(BINARY).is_file() {
            require::missing(Dependency::Dovecot, &format!("{BINARY} is not installed"));
            return None;
        }
        match Self::try_start() {
            Ok(d) => Some(d),
            Err(why) => {
                require::missing(Dependency::Dovecot, &why);
                None
            }
        }
    }

    fn try_start() -> Result<Dovecot, String> {
        let dir = tempfile::tempdir().map_err(|e| format!("temp dir: {e}"))?;
        let root = dir.path().to_path_buf();
        let is_root = unsafe { libc::geteuid() } == 0;
        // As root, Dovecot drops to its own users and refuses mail access
        // as UID 0: the mailbox belongs to `nobody`. Otherwise everything
        // runs as whoever runs the test.
        let (mail_uid, mail_gid) = if is_root {
            (65534, 65534)
        } else {
            unsafe { (libc::geteuid(), libc::getegid()) }
        };
        let me = std::env::var("USER").unwrap_or_else(|_| "nobody".into());
        // The folder must be reachable by the mail and login users.
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755))
            .map_err(|e| format!("chmod {}: {e}", root.display()))?;
        for sub in ["run", "state", "mail"] {
            std::fs::create_dir_all(root.join(sub)).map_err(|e| format!("{sub}: {e}"))?;
        }
        let maildir = root.join("mail").join(IMAP_USER);
        for sub in ["cur", "new", "tmp"] {
            std::fs::create_dir_all(maildir.join(sub)).map_err(|e| format!("maildir: {e}"))?;
        }
        chown_tree(&root.join("mail"), mail_uid, mail_gid)?;

        let (cert, key, ca) = make_certificates()?;
        std::fs::write(root.join("cert.pem"), cert).map_err(|e| e.to_string())?;
        std::fs::write(root.join("key.pem"), key).map_err(|e| e.to_string())?;
        std::fs::write(root.join("ca.pem"), ca).map_err(|e| e.to_string())?;
        std::fs::write(
            root.join("passwd"),
            format!(
                "{IMAP_USER}:{{PLAIN}}{IMAP_PASSWORD}:{mail_uid}:{mail_gid}::{}::\n",
                maildir.display()
            ),
        )
        .map_err(|e| e.to_string())?;

        let imap_port = free_port();
        let imaps_port = free_port();
        let users = if is_root {
            String::new()
        } else {
            format!(
                "default_internal_user = {me}\ndefault_login_user = {me}\n\
                 service anvil {{\n  chroot =\n}}\nservice imap-login {{\n  chroot =\n}}\n"
            )
        };
        let dh = Path::new("/usr/share/dovecot/dh.pem");
        let dh = if dh.is_file() {
            format!("ssl_dh = <{}\n", dh.display())
        } else {
            String::new()
        };
        let config = format!(
            "# A private instance for one test; nothing of /etc/dovecot.\n\
             base_dir = {root}/run\n\
             state_dir = {root}/state\n\
             log_path = {root}/dovecot.log\n\
             protocols = imap\n\
             listen = 127.0.0.1\n\
             ssl = yes\n\
             ssl_cert = <{root}/cert.pem\n\
             ssl_key = <{root}/key.pem\n\
             {dh}\
             ssl_min_protocol = TLSv1.2\n\
             disable_plaintext_auth = yes\n\
             auth_mechanisms = plain login\n\
             first_valid_uid = 1\n\
             first_valid_gid = 1\n\
             mail_location = maildir:{maildir}\n\
             {users}\
             passdb {{\n  driver = passwd-file\n  args = scheme=PLAIN username_format=%u {root}/passwd\n}}\n\
             userdb {{\n  driver = passwd-file\n  args = username_format=%u {root}/passwd\n}}\n\
             namespace inbox {{\n  inbox = yes\n  separator = /\n}}\n\
             service imap-login {{\n  inet_listener imap {{\n    address = 127.0.0.1\n    port = {imap_port}\n  }}\n  \
             inet_listener imaps {{\n    address = 127.0.0.1\n    port = {imaps_port}\n    ssl = yes\n  }}\n}}\n",
            root = root.display(),
            maildir = maildir.display(),
        );
        let conf = root.join("dovecot.conf");
        std::fs::write(&conf, config).map_err(|e| e.to_string())?;
        let child = Command::new(BINARY)
            .arg("-F")
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("{BINARY}: {e}"))?;
        let mut dovecot = Dovecot {
            dir,
            child,
            imap_port,
            imaps_port,
            mail_uid,
            mail_gid,
            delivered: AtomicU32::new(0),
        };
        // Up when both listeners accept (bounded; dovecot says nothing on
        // stdout when ready).
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(status)) = dovecot.child.try_wait() {
                let mut stderr = String::new();
                if let Some(mut e) = dovecot.child.stderr.take() {
                    use std::io::Read as _;
                    let _ = e.read_to_string(&mut stderr);
                }
                return Err(format!(
                    "dovecot exited at start ({status}): {}{}",
                    stderr.trim(),
                    dovecot.log()
                ));
            }
            let up = |port| std::net::TcpStream::connect(("127.0.0.1", port)).is_ok();
            if up(imap_port) && up(imaps_port) {
                return Ok(dovecot);
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "dovecot did not listen within 20 s: {}",
                    dovecot.log()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Dovecot's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("dovecot.log")).unwrap_or_default()
    }

    /// `imap://bounces@127.0.0.1:PORT/INBOX`: STARTTLS.
    pub fn starttls_url(&self) -> String {
        format!("imap://{IMAP_USER}@127.0.0.1:{}/INBOX", self.imap_port)
    }

    /// `imaps://bounces@localhost:PORT/INBOX`: TLS from the start.
    pub fn imaps_url(&self) -> String {
        format!("imaps://{IMAP_USER}@localhost:{}/INBOX", self.imaps_port)
    }

    /// The PEM file of the CA that signed the server's certificate.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    fn maildir(&self, folder: &str) -> PathBuf {
        let base = self.dir.path().join("mail").join(IMAP_USER);
        if folder.eq_ignore_ascii_case("INBOX") {
            base
        } else {
            // Maildir++: a folder is `.NAME`, hierarchy separated by dots.
            base.join(format!(".{}", folder.replace('/', ".")))
        }
    }

    /// Delivers a message into INBOX as an MDA does (tmp, then new).
    pub fn deliver(&self, raw: &[u8]) {
        let n = self.delivered.fetch_add(1, Ordering::Relaxed);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs();
        let name = format!("{now}.M{n}P{}.letterpress-test", std::process::id());
        let base = self.maildir("INBOX");
        let tmp = base.join("tmp").join(&name);
        std::fs::write(&tmp, raw).expect("maildir tmp");
        let _ = chown(&tmp, self.mail_uid, self.mail_gid);
        std::fs::rename(&tmp, base.join("new").join(&name)).expect("maildir new");
    }

    /// The messages in `folder` (INBOX, or a folder letterpress made), in
    /// file-name order; empty when the folder does not exist.
    pub fn messages(&self, folder: &str) -> Vec<Stored> {
        let base = self.maildir(folder);
        let mut found = Vec::new();
        for sub in ["new", "cur"] {
            let Ok(entries) = std::fs::read_dir(base.join(sub)) else {
                continue;
            };
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                let flags = name
                    .rsplit_once(":2,")
                    .map(|(_, f)| f.to_string())
                    .unwrap_or_default();
                if let Ok(raw) = std::fs::read(entry.path()) {
                    found.push((name, Stored { raw, flags }));
                }
            }
        }
        found.sort_by(|a, b| a.0.cmp(&b.0));
        found.into_iter().map(|(_, s)| s).collect()
    }
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        // SIGTERM: the master stops its children (SIGKILL would leave them).
        if let Ok(pid) = i32::try_from(self.child.id()) {
            unsafe {
                libc::kill(pid, libc::SIGTERM);
            }
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn chown(path: &Path, uid: u32, gid: u32) -> Result<(), String> {
    std::os::unix::fs::chown(path, Some(uid), Some(gid))
        .map_err(|e| format!("chown {}: {e}", path.display()))
}

fn chown_tree(path: &Path, uid: u32, gid: u32) -> Result<(), String> {
    chown(path, uid, gid)?;
    if path.is_dir() {
        for entry in std::fs::read_dir(path)
            .map_err(|e| e.to_string())?
            .flatten()
        {
            chown_tree(&entry.path(), uid, gid)?;
        }
    }
    Ok(())
}

/// A CA and a server certificate for `localhost` and 127.0.0.1 signed by
/// it: (certificate PEM, key PEM, CA PEM).
fn make_certificates() -> Result<(String, String, String), String> {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, SanType};
    let err = |e: rcgen::Error| format!("rcgen: {e}");
    let ca_key = KeyPair::generate().map_err(err)?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "letterpress test CA");
    let ca_cert = ca_params.self_signed(&ca_key).map_err(err)?;
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().map_err(err)?;
    let mut params = CertificateParams::new(vec!["localhost".to_string()]).map_err(err)?;
    params
        .subject_alt_names
        .push(SanType::IpAddress(std::net::IpAddr::from([127, 0, 0, 1])));
    params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    let cert = params.signed_by(&key, &issuer).map_err(err)?;
    Ok((cert.pem(), key.serialize_pem(), ca_cert.pem()))
}
