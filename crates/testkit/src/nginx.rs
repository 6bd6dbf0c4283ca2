//! A private nginx of the test's own (Debian's `nginx` package): its own
//! prefix, configuration, pid file, logs and temp folders under a temp
//! dir, listening on loopback ports it is given, serving a site file the
//! test hands it, with a certificate for [`Nginx::HOST`] made for the run.
//!
//! The ports are chosen before nginx starts (see [`Nginx::prepare`]), so
//! the installation behind it can be told its public URL first.

use std::net::{IpAddr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::WAIT;
use crate::require::{self, Dependency};

/// An nginx prepared (temp dir, certificate, ports) and, after
/// [`Nginx::start`], running; stopped (SIGTERM, then waited for) when
/// dropped.
pub struct Nginx {
    bin: PathBuf,
    dir: tempfile::TempDir,
    /// The loopback port of the site's plain HTTP server.
    pub http_port: u16,
    /// The loopback port of the site's HTTPS server.
    pub https_port: u16,
    /// The certificate (PEM) nginx presents, self-signed for [`Nginx::HOST`].
    pub cert_pem: String,
    child: Option<Child>,
}

impl Nginx {
    /// The name the site is served under (the certificate's name); a
    /// client resolves it to loopback (see [`Nginx::client`]).
    pub const HOST: &'static str = "newsletter.example.com";

    /// Finds nginx and makes its temp dir, certificate and ports; `None`
    /// (after [`require::missing`]) when nginx is not installed.
    pub fn prepare() -> Option<Nginx> {
        let Some(bin) = find_nginx() else {
            require::missing(
                Dependency::Nginx,
                "nginx is not installed (not on PATH, nor /usr/sbin/nginx)",
            );
            return None;
        };
        let dir = tempfile::tempdir().expect("temp dir");
        let cert = rcgen::generate_simple_self_signed(vec![Self::HOST.to_string()])
            .expect("a self-signed certificate");
        let cert_pem = cert.cert.pem();
        std::fs::write(dir.path().join("cert.pem"), &cert_pem).expect("write the certificate");
        std::fs::write(dir.path().join("key.pem"), cert.signing_key.serialize_pem())
            .expect("write the key");
        Some(Nginx {
            bin,
            http_port: free_port(),
            https_port: free_port(),
            cert_pem,
            dir,
            child: None,
        })
    }

    /// The certificate file, for `ssl_certificate`.
    pub fn cert_path(&self) -> PathBuf {
        self.dir.path().join("cert.pem")
    }

    /// The key file, for `ssl_certificate_key`.
    pub fn key_path(&self) -> PathBuf {
        self.dir.path().join("key.pem")
    }

    /// `https://HOST:PORT`, the site's address.
    pub fn https_url(&self) -> String {
        format!("https://{}:{}", Self::HOST, self.https_port)
    }

    /// `http://HOST:PORT`, the site's plain HTTP address.
    pub fn http_url(&self) -> String {
        format!("http://{}:{}", Self::HOST, self.http_port)
    }

    /// Starts nginx with `site` (the text of a site file: `upstream` and
    /// `server` blocks) inside its `http` block, and waits until it
    /// accepts connections on both ports. Panics with nginx's error log
    /// when it does not start.
    pub async fn start(&mut self, site: &str) {
        let d = self.dir.path();
        std::fs::write(d.join("site.conf"), site).expect("write the site");
        let p = |name: &str| d.join(name).display().to_string();
        // Everything nginx would write goes under the temp dir; nothing of
        // the system's nginx (its config, logs, temp folders) is touched.
        let main = format!(
            "worker_processes 1;\n\
             error_log {log} info;\n\
             events {{ worker_connections 128; }}\n\
             http {{\n\
             \x20   access_log {access};\n\
             \x20   client_body_temp_path {body};\n\
             \x20   proxy_temp_path {proxy};\n\
             \x20   fastcgi_temp_path {fastcgi};\n\
             \x20   uwsgi_temp_path {uwsgi};\n\
             \x20   scgi_temp_path {scgi};\n\
             \x20   include {site};\n\
             }}\n",
            log = p("error.log"),
            access = p("access.log"),
            body = p("body"),
            proxy = p("proxy"),
            fastcgi = p("fastcgi"),
            uwsgi = p("uwsgi"),
            scgi = p("scgi"),
            site = p("site.conf"),
        );
        std::fs::write(d.join("nginx.conf"), main).expect("write nginx.conf");
        let child = Command::new(&self.bin)
            .arg("-p")
            .arg(d)
            .arg("-e")
            .arg(d.join("error.log"))
            .arg("-c")
            .arg(d.join("nginx.conf"))
            .arg("-g")
            .arg(format!("daemon off; pid {};", p("nginx.pid")))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", self.bin.display()));
        self.child = Some(child);
        let deadline = tokio::time::Instant::now() + WAIT;
        for port in [self.http_port, self.https_port] {
            loop {
                if let Some(status) = self
                    .child
                    .as_mut()
                    .and_then(|c| c.try_wait().ok().flatten())
                {
                    panic!("nginx exited ({status}):\n{}", self.error_log());
                }
                if tokio::net::TcpStream::connect(("127.0.0.1", port))
                    .await
                    .is_ok()
                {
                    break;
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "nginx does not listen on 127.0.0.1:{port}:\n{}",
                    self.error_log()
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }

    /// What nginx wrote into its error log so far.
    pub fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
    }

    /// What nginx wrote into its access log so far.
    pub fn access_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("access.log")).unwrap_or_default()
    }

    /// The temp dir nginx runs in.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// An HTTP client as a visitor's browser at `from` (a loopback address
    /// such as 127.0.0.2) would be: it connects from that address, resolves
    /// [`Nginx::HOST`] to this nginx, trusts only its certificate, and
    /// follows no redirects.
    pub fn client(&self, from: IpAddr) -> reqwest::Client {
        let loopback = IpAddr::from([127, 0, 0, 1]);
        reqwest::Client::builder()
            .local_address(from)
            .resolve(Self::HOST, SocketAddr::new(loopback, 0))
            .tls_certs_only([
                reqwest::Certificate::from_pem(self.cert_pem.as_bytes()).expect("our certificate")
            ])
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .timeout(WAIT)
            .build()
            .expect("HTTP client")
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SIGTERM is nginx's fast shutdown: the master stops its
            // workers and exits. A SIGKILL would leave the workers behind.
            // SAFETY: kill(2) on the pid of a child we have not reaped.
            unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
            let _ = child.wait();
        }
    }
}

/// nginx on PATH or where Debian puts it (`/usr/sbin` is not on every
/// user's PATH).
fn find_nginx() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin")])
        .map(|d| d.join("nginx"))
        .find(|p| p.is_file())
}

/// A loopback port nobody listens on right now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}
