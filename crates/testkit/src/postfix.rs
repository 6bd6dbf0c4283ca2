//! A real postfix, Debian's, as the operator's own relay on loopback: a
//! private instance (its own `config_directory`, `queue_directory` and log
//! file under a temp dir) with a certificate from a CA the test makes,
//! STARTTLS required on one port, implicit TLS on another, and STARTTLS
//! offered but not required on a third. It relays
//! what it accepts to the kit's [`SmtpServer`](crate::SmtpServer), so a
//! test counts what arrived there, and [`Postfix::sessions`] reads the log
//! for whether each connection was encrypted.
//!
//! The master runs as root (postfix drops to its `postfix` user for the
//! daemons), so a test outside a root shell or CI is skipped, as it is
//! without the package.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::require::{self, Dependency};

/// The `postfix` command of Debian's package.
const POSTFIX: &str = "/usr/sbin/postfix";

/// A running private postfix; stopped when dropped.
pub struct Postfix {
    dir: tempfile::TempDir,
    /// The port that answers plain SMTP and requires STARTTLS before MAIL.
    pub starttls_port: u16,
    /// The port that speaks TLS from the first byte (smtps).
    pub smtps_port: u16,
    /// The port that offers STARTTLS but takes mail in plain text too
    /// (postfix's `smtpd_tls_security_level = may`, Debian's default).
    pub may_port: u16,
    master: Child,
}

/// One SMTP connection as postfix logged it.
#[derive(Debug, Clone)]
pub struct Session {
    /// The log line saying TLS was set up, if it was.
    pub tls: Option<String>,
    /// postfix's summary of the connection's commands, e.g.
    /// `ehlo=2 starttls=1 mail=1 rcpt=1 data=1 quit=1 commands=7`.
    pub commands: String,
}

impl Postfix {
    /// Starts an instance that relays everything it accepts to
    /// `127.0.0.1:relay_to`; `None` after [`require::missing`] said why it
    /// cannot run here.
    pub fn start(relay_to: u16) -> Option<Postfix> {
        if !Path::new(POSTFIX).exists() {
            require::missing(Dependency::Postfix, &format!("{POSTFIX} is not installed"));
            return None;
        }
        // SAFETY: geteuid has no preconditions and cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            require::missing(
                Dependency::Postfix,
                "a private postfix instance is started as root, and this test is not",
            );
            return None;
        }
        let dir = tempfile::tempdir().expect("temp dir");
        let root = dir.path();
        // postfix's daemons run as its own user: they must reach the
        // queue, data and log under the temp dir.
        set_mode(root, 0o755);
        for sub in ["etc", "queue", "data"] {
            std::fs::create_dir(root.join(sub)).expect("postfix dir");
        }
        let status = Command::new("chown")
            .args(["postfix", &root.join("data").display().to_string()])
            .status()
            .expect("chown");
        assert!(status.success(), "chown postfix data dir");
        let (cert, key, ca) = certificates();
        std::fs::write(root.join("ca.pem"), ca).unwrap();
        std::fs::write(root.join("relay.pem"), cert).unwrap();
        std::fs::write(root.join("relay.key"), key).unwrap();
        set_mode(&root.join("relay.key"), 0o600);

        let starttls_port = free_port();
        let smtps_port = free_port();
        let may_port = free_port();
        let r = root.display();
        std::fs::write(
            root.join("etc/main.cf"),
            format!(
                "compatibility_level = 3.6
queue_directory = {r}/queue
data_directory = {r}/data
mail_owner = postfix
setgid_group = postdrop
myhostname = relay.test
mydomain = relay.test
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject
maillog_file_prefixes = {r}
maillog_file = {r}/postfix.log
relayhost = [127.0.0.1]:{relay_to}
smtp_tls_security_level = none
smtpd_tls_cert_file = {r}/relay.pem
smtpd_tls_key_file = {r}/relay.key
smtpd_tls_loglevel = 1
alias_maps =
alias_database =
local_recipient_maps =
biff = no
"
            ),
        )
        .unwrap();
        std::fs::write(
            root.join("etc/master.cf"),
            format!(
                "{starttls_port} inet n - n - - smtpd -o smtpd_tls_security_level=encrypt
{smtps_port} inet n - n - - smtpd -o smtpd_tls_wrappermode=yes -o smtpd_tls_security_level=encrypt
{may_port} inet n - n - - smtpd -o smtpd_tls_security_level=may
pickup unix n - n 60 1 pickup
cleanup unix n - n - 0 cleanup
qmgr unix n - n 300 1 qmgr
tlsmgr unix - - n 1000? 1 tlsmgr
rewrite unix - - n - - trivial-rewrite
bounce unix - - n - 0 bounce
defer unix - - n - 0 bounce
trace unix - - n - 0 bounce
verify unix - - n - 1 verify
flush unix n - n 1000? 0 flush
proxymap unix - - n - - proxymap
smtp unix - - n - - smtp
relay unix - - n - - smtp
showq unix n - n - - showq
error unix - - n - - error
retry unix - - n - - error
discard unix - - n - - discard
anvil unix - - n - 1 anvil
scache unix - - n - 1 scache
postlog unix-dgram n - n - 1 postlogd
"
            ),
        )
        .unwrap();
        let output = std::fs::File::create(root.join("master.out")).unwrap();
        let master = Command::new(POSTFIX)
            .arg("-c")
            .arg(root.join("etc"))
            .arg("start-fg")
            .stdin(Stdio::null())
            .stdout(output.try_clone().unwrap())
            .stderr(output)
            .spawn()
            .expect("postfix start-fg");
        let mut postfix = Postfix {
            dir,
            starttls_port,
            smtps_port,
            may_port,
            master,
        };
        postfix.wait_listening();
        Some(postfix)
    }

    /// The CA certificate (PEM) that signed the relay's certificate.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// The log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("postfix.log")).unwrap_or_default()
    }

    /// The finished SMTP connections on the listening ports, in order.
    pub fn sessions(&self) -> Vec<Session> {
        sessions(&self.log())
    }

    /// Lines of the log with `status=sent`: messages postfix handed on.
    pub fn sent(&self) -> usize {
        self.log()
            .lines()
            .filter(|l| l.contains("status=sent"))
            .count()
    }

    fn wait_listening(&mut self) {
        let deadline = Instant::now() + crate::WAIT;
        for port in [self.starttls_port, self.smtps_port, self.may_port] {
            loop {
                if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    break;
                }
                if let Ok(Some(status)) = self.master.try_wait() {
                    panic!(
                        "postfix exited ({status}) before listening:\n{}\n{}",
                        std::fs::read_to_string(self.dir.path().join("master.out"))
                            .unwrap_or_default(),
                        self.log()
                    );
                }
                assert!(
                    Instant::now() < deadline,
                    "postfix does not listen on {port}:\n{}",
                    self.log()
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

impl Drop for Postfix {
    fn drop(&mut self) {
        let _ = Command::new(POSTFIX)
            .arg("-c")
            .arg(self.dir.path().join("etc"))
            .arg("stop")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.master.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.master.kill();
        let _ = self.master.wait();
    }
}

/// The sessions of an smtpd log: each `connect from` to its `disconnect
/// from` in the same process, and whether TLS was established between.
fn sessions(log: &str) -> Vec<Session> {
    let mut open: std::collections::HashMap<String, Option<String>> = Default::default();
    let mut done = Vec::new();
    for line in log.lines() {
        let Some(pid) = line
            .split_once("postfix/smtpd[")
            .and_then(|(_, rest)| rest.split_once(']'))
            .map(|(pid, _)| pid.to_string())
        else {
            continue;
        };
        if line.contains("]: connect from ") {
            open.insert(pid, None);
        } else if line.contains("TLS connection established from") {
            if let Some(tls) = open.get_mut(&pid) {
                *tls = Some(line.to_string());
            }
        } else if let Some((_, rest)) = line.split_once("]: disconnect from ") {
            let tls = open.remove(&pid).flatten();
            let commands = rest.split_once(' ').map(|(_, c)| c).unwrap_or("");
            done.push(Session {
                tls,
                commands: commands.to_string(),
            });
        }
    }
    done
}

/// A CA, and a certificate it signed for `localhost` and `127.0.0.1`:
/// (certificate PEM, key PEM, CA PEM).
fn certificates() -> (String, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca.distinguished_name
        .push(DnType::CommonName, "letterpress test CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca.self_signed(&ca_key).expect("CA certificate");
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let key = KeyPair::generate().expect("relay key");
    let mut params = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
        .expect("relay params");
    params
        .distinguished_name
        .push(DnType::CommonName, "relay.test");
    let cert = params.signed_by(&key, &issuer).expect("relay certificate");
    (cert.pem(), key.serialize_pem(), ca_cert.pem())
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

#[cfg(test)]
mod tests {
    use super::sessions;

    #[test]
    fn sessions_pair_connects_with_their_tls_and_disconnects() {
        let log = "\
Dec 01 15:27:13 relay postfix/smtpd[1]: connect from localhost[127.0.0.1]
Dec 01 15:27:13 relay postfix/smtpd[2]: connect from localhost[127.0.0.1]
Dec 01 15:27:13 relay postfix/smtpd[1]: Anonymous TLS connection established from localhost[127.0.0.1]: TLSv1.3
Dec 01 15:27:13 relay postfix/smtpd[2]: disconnect from localhost[127.0.0.1] ehlo=1 mail=0/1 commands=1/2
Dec 01 15:27:13 relay postfix/smtp[3]: ABC: to=<b@y.example>, status=sent (250 ok)
Dec 01 15:27:13 relay postfix/smtpd[1]: disconnect from localhost[127.0.0.1] ehlo=2 starttls=1 quit=1 commands=4
";
        let s = sessions(log);
        assert_eq!(s.len(), 2);
        assert!(s[0].tls.is_none());
        assert_eq!(s[0].commands, "ehlo=1 mail=0/1 commands=1/2");
        assert!(s[1].tls.as_deref().unwrap().contains("TLSv1.3"));
        assert_eq!(s[1].commands, "ehlo=2 starttls=1 quit=1 commands=4");
    }
}
