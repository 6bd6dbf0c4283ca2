//! `init`, `dkim keygen`, `dns` and `doctor`, as an operator meets them:
//! the installed binary alone, in a copy of a Zola site, with no variable
//! set and no file of the checkout in reach.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use letterpress_testkit::{DnsServer, Lp};

/// A copy of the Rust Trends site (the corpus) with the Zola config it is
/// published with, and a copy of the built binary outside the checkout.
struct Site {
    _dir: tempfile::TempDir,
    root: PathBuf,
    binary: PathBuf,
}

fn site() -> Option<Site> {
    let corpus = letterpress_testkit::corpus()?;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("rust-trends");
    copy_tree(&corpus.join("rust-trends"), &root);
    std::fs::write(
        root.join("config.toml"),
        "base_url = \"https://rust-trends.com\"\ntitle = \"Rust Trends\"\ncompile_sass = false\n",
    )
    .unwrap();
    let binary = dir.path().join("bin/letterpress");
    std::fs::create_dir_all(binary.parent().unwrap()).unwrap();
    std::fs::copy(env!("CARGO_BIN_EXE_letterpress"), &binary).unwrap();
    Some(Site {
        _dir: dir,
        root,
        binary,
    })
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
            let mut perms = std::fs::metadata(&target).unwrap().permissions();
            #[allow(clippy::permissions_set_readonly_false)]
            perms.set_readonly(false);
            std::fs::set_permissions(&target, perms).unwrap();
        }
    }
}

impl Site {
    /// `letterpress ARGS` in `dir`, with nothing in the environment but
    /// `PATH` and `HOME`: what an operator's shell would give it.
    fn run_in(&self, dir: &Path, args: &[&str]) -> Output {
        Command::new(&self.binary)
            .current_dir(dir)
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("HOME", dir)
            .args(args)
            .output()
            .expect("run the installed letterpress")
    }

    fn run(&self, args: &[&str]) -> Output {
        self.run_in(&self.root, args)
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "letterpress {args:?}: {}",
            text(&out.stderr)
        );
        text(&out.stderr)
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[cfg(unix)]
fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn init_makes_a_site_ready_to_render_with_the_installed_binary() {
    let Some(site) = site() else { return };
    let said = site.ok(&["init"]);
    assert!(
        said.contains("Zola site, newsletter in content/newsletter/"),
        "{said}"
    );
    assert!(
        said.contains("Next:") && said.contains("letterpress dns"),
        "{said}"
    );
    let data = site.root.join(".letterpress");
    #[cfg(unix)]
    {
        assert_eq!(mode(&data), 0o700);
        assert_eq!(mode(&data.join("secret.key")), 0o600);
        assert_eq!(mode(&data.join("dkim-letterpress.pem")), 0o600);
    }
    assert_eq!(
        std::fs::read_to_string(data.join(".gitignore"))
            .unwrap()
            .lines()
            .last(),
        Some("*")
    );
    let config = std::fs::read_to_string(site.root.join("letterpress.toml")).unwrap();
    assert!(
        config.contains("issue_url = \"https://rust-trends.com/newsletter/{slug}/\""),
        "{config}"
    );
    assert!(config.contains("name = \"Rust Trends\""), "{config}");

    // Renders from the site root with no other setting: the built-in
    // layout, the site's snippets, links made absolute against the site.
    site.ok(&["render", "content/newsletter/69.md", "--out", "preview"]);
    let html = std::fs::read_to_string(site.root.join("preview/email.html")).unwrap();
    assert!(
        html.contains("https://rust-trends.com/signup/"),
        "the include_md snippet, its link made absolute"
    );
    // From a subfolder, naming the file: its paths mean the same.
    let out = site.run_in(
        &site.root.join("content"),
        &[
            "--config",
            "../letterpress.toml",
            "render",
            "newsletter/69.md",
            "--out",
            "../preview2",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));

    // Never overwritten without --force, and the secret survives --force.
    let secret = std::fs::read_to_string(data.join("secret.key")).unwrap();
    let again = site.run(&["init"]);
    assert_eq!(again.status.code(), Some(1));
    assert!(
        text(&again.stderr).contains("pass --force"),
        "{}",
        text(&again.stderr)
    );
    site.ok(&["init", "--force"]);
    assert_eq!(
        std::fs::read_to_string(data.join("secret.key")).unwrap(),
        secret
    );
}

#[test]
fn dkim_keygen_and_dns_print_the_records_for_the_key_in_use() {
    let Some(site) = site() else { return };
    site.ok(&["init"]);
    let key = letterpress_dkim::RsaKey::from_pem(
        &std::fs::read_to_string(site.root.join(".letterpress/dkim-letterpress.pem")).unwrap(),
    )
    .expect("init's key");
    let out = site.run(&["dns"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let zone = text(&out.stdout);
    let dkim_line = zone
        .lines()
        .find(|l| l.starts_with("letterpress._domainkey.rust-trends.com. IN TXT"))
        .unwrap_or_else(|| panic!("no DKIM record in:\n{zone}"));
    // The strings of the record, joined, carry the key's public half.
    let joined: String = dkim_line.split('"').skip(1).step_by(2).collect();
    assert_eq!(joined, key.dns_record().unwrap());
    assert!(
        dkim_line
            .split('"')
            .skip(1)
            .step_by(2)
            .all(|s| s.len() <= 255)
    );
    assert!(zone.contains("rust-trends.com. IN TXT \"v=spf1"), "{zone}");
    assert!(
        zone.contains("_dmarc.rust-trends.com. IN TXT \"v=DMARC1; p=none"),
        "{zone}"
    );

    // A second key under its own selector; an existing file is kept.
    let out = site.run(&["dkim", "keygen", "--selector", "lp2027"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let second = site.root.join(".letterpress/dkim-lp2027.pem");
    #[cfg(unix)]
    assert_eq!(mode(&second), 0o600);
    assert!(
        text(&out.stdout).starts_with("lp2027._domainkey.rust-trends.com. IN TXT"),
        "{}",
        text(&out.stdout)
    );
    let refused = site.run(&["dkim", "keygen", "--selector", "lp2027"]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        text(&refused.stderr).contains("exists"),
        "{}",
        text(&refused.stderr)
    );
}

/// `doctor` against a DNS server of the test's own and a running `serve`:
/// an `http://` public URL fails, what this environment can satisfy passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_fails_an_http_public_url_and_passes_what_is_right() {
    let mut lp = Lp::new(env!("CARGO_BIN_EXE_letterpress"));
    let key = letterpress_dkim::RsaKey::generate().unwrap();
    let key_path = lp.path("dkim.pem");
    std::fs::write(&key_path, key.to_pkcs8_pem().unwrap()).unwrap();
    lp.set("LETTERPRESS_DKIM__DOMAIN", "example.test")
        .set("LETTERPRESS_DKIM__SELECTOR", "lp")
        .set(
            "LETTERPRESS_DKIM__PRIVATE_KEY_PATH",
            key_path.to_str().unwrap(),
        )
        .set(
            "LETTERPRESS_NEWSLETTER__POSTAL_ADDRESS",
            "1 Test Street, Testville",
        );
    let dns = DnsServer::start().await;
    dns.publish_txt("lp._domainkey.example.test", &key.dns_record().unwrap());
    dns.publish_txt("example.test", "v=spf1 include:_spf.relay.example ~all");
    dns.publish_txt(
        "_dmarc.example.test",
        "v=DMARC1; p=none; rua=mailto:d@example.test",
    );
    lp.set("LETTERPRESS_DNS__RESOLVER", &dns.resolver());
    let served = lp.serve().await;
    lp.set("LETTERPRESS_SERVER__PUBLIC_URL", &served.url(""));

    let out = lp.run(&["doctor"]).await;
    let table = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{table}\n{}", text(&out.stderr));
    let line = |what: &str| {
        table
            .lines()
            .find(|l| l.contains(what))
            .unwrap_or_else(|| panic!("no {what:?} line in:\n{table}"))
            .to_string()
    };
    assert!(
        line("server.public_url is https").starts_with("FAIL"),
        "{table}"
    );
    for passing in [
        "public_url answers /healthz",
        "unsubscribe and signup routes",
        "From domain aligns with dkim.domain",
        "DKIM key",
        "DKIM record lp._domainkey.example.test",
        "SPF record example.test",
        "newsletter.postal_address",
        "delivery.database_outage within the leases",
    ] {
        assert!(line(passing).starts_with("pass"), "{passing}:\n{table}");
    }
    assert!(
        line("DMARC record").starts_with("WARN"),
        "p=none is a start:\n{table}"
    );
    // Waiting out the database longer than the leases surely hold.
    lp.set("LETTERPRESS_DELIVERY__DATABASE_OUTAGE", "10m");
    let out = lp.run(&["doctor"]).await;
    let table = text(&out.stdout);
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("WARN") && l.contains("delivery.database_outage")),
        "{table}"
    );
    lp.unset("LETTERPRESS_DELIVERY__DATABASE_OUTAGE");

    // The published key is not the one in use: that fails.
    let other = DnsServer::start().await;
    other.publish_txt(
        "lp._domainkey.example.test",
        &letterpress_dkim::RsaKey::generate()
            .unwrap()
            .dns_record()
            .unwrap(),
    );
    lp.set("LETTERPRESS_DNS__RESOLVER", &other.resolver());
    let out = lp.run(&["dns", "--check"]).await;
    assert_eq!(out.status.code(), Some(1));
    let report = text(&out.stdout);
    assert!(
        report
            .lines()
            .any(|l| l.starts_with("differs") && l.contains("lp._domainkey.example.test")),
        "{report}"
    );
    assert!(
        report
            .lines()
            .any(|l| l.starts_with("missing") && l.contains("_dmarc.example.test")),
        "{report}"
    );
    served.stop_ok().await;
}
