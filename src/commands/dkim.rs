//! `letterpress dkim keygen`: a signing key, written 0600 where the
//! configuration looks for it, and the record to publish for it.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, anyhow, bail};
use letterpress_dkim::{Ed25519Key, RsaKey};

use crate::config::Config;
use crate::files;

/// `letterpress dkim keygen [--selector S] [--ed25519] [--force]`.
pub(crate) fn keygen(
    config: &Config,
    selector_arg: Option<&str>,
    ed25519: bool,
    force: bool,
) -> anyhow::Result<ExitCode> {
    let d = &config.dkim;
    let selector = selector_arg;
    let base_selector = selector
        .map(str::to_string)
        .or_else(|| d.selector.clone())
        .unwrap_or_else(|| "letterpress".to_string());
    let (selector, configured) = if ed25519 {
        (
            selector
                .map(str::to_string)
                .or_else(|| d.ed25519_selector.clone())
                .unwrap_or_else(|| format!("{base_selector}-ed25519")),
            d.ed25519_private_key_path.clone(),
        )
    } else {
        (base_selector, d.private_key_path.clone())
    };
    // A selector other than the configured one is a new key (a rotation):
    // it gets a file of its own beside the data, never the key in use.
    let configured_selector = if ed25519 {
        &d.ed25519_selector
    } else {
        &d.selector
    };
    let path: PathBuf = configured
        .filter(|_| selector_given_is(selector_arg, configured_selector))
        .unwrap_or_else(|| config.data_dir().join(format!("dkim-{selector}.pem")));
    if path.exists() && !force {
        bail!(
            "{} exists; a new key needs its own selector and DNS record (--selector), or --force to replace it \
             (mail signed with the old key stops verifying once its record is gone)",
            path.display()
        );
    }
    let (pem, record) = if ed25519 {
        let key = Ed25519Key::generate().map_err(|e| anyhow!("generating an Ed25519 key: {e}"))?;
        let pem = key.to_pkcs8_pem().map_err(|e| anyhow!("{e}"))?;
        (pem, key.dns_record())
    } else {
        let key = RsaKey::generate().map_err(|e| anyhow!("generating an RSA key: {e}"))?;
        let pem = key.to_pkcs8_pem().map_err(|e| anyhow!("{e}"))?;
        let record = key.dns_record().map_err(|e| anyhow!("{e}"))?;
        (pem, record)
    };
    if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        files::create_private_dir(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    files::write_private_forced(&path, &pem, force)
        .with_context(|| format!("writing {}", path.display()))?;
    let domain = d
        .domain
        .clone()
        .map_or_else(|| crate::dns::from_domain(config), Ok)?;
    eprintln!(
        "wrote {} ({}, mode 0600)",
        path.display(),
        if ed25519 { "Ed25519" } else { "RSA-2048" }
    );
    eprintln!("\nIn letterpress.toml, [dkim]:");
    if ed25519 {
        eprintln!(
            "  ed25519_private_key_path = \"{}\"\n  ed25519_selector = \"{selector}\"",
            path.display()
        );
    } else {
        eprintln!(
            "  domain = \"{domain}\"\n  selector = \"{selector}\"\n  private_key_path = \"{}\"",
            path.display()
        );
    }
    let record = crate::dns::Expected {
        kind: crate::dns::Kind::Dkim,
        name: format!("{selector}._domainkey.{domain}"),
        value: record,
        note: String::new(),
    };
    eprintln!("\nPublish (then check with `letterpress dns --check`):");
    println!("{}", crate::dns::zone_line(&record));
    Ok(ExitCode::SUCCESS)
}

/// Whether the `--selector` given (if any) names the configured selector.
fn selector_given_is(given: Option<&str>, configured: &Option<String>) -> bool {
    match given {
        None => true,
        Some(g) => configured.as_deref() == Some(g),
    }
}
