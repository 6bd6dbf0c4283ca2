//! `letterpress dns [--check]`: the records to publish for the From
//! domain, and with `--check` whether they are published.

use std::process::ExitCode;

use crate::config::Config;
use crate::dns::{self, Found, Lookup};

/// `letterpress dns`.
pub(crate) async fn dns(
    config: &Config,
    check: bool,
    resolver: Option<&str>,
) -> anyhow::Result<ExitCode> {
    let records = dns::expected(config)?;
    if config.dkim.private_key_path.is_none() {
        eprintln!(
            "note: no DKIM key is configured (dkim.domain, dkim.selector, dkim.private_key_path); \
             `letterpress dkim keygen` makes one"
        );
    }
    if !check {
        println!(
            "; The TXT records to publish for {} (zone-file syntax: paste the",
            dns::from_domain(config)?
        );
        println!("; quoted strings as one value in a DNS provider's form).");
        for r in &records {
            println!();
            println!("; {}", r.note);
            println!("{}", dns::zone_line(r));
        }
        return Ok(ExitCode::SUCCESS);
    }
    let lookup = Lookup::new(resolver.or(config.dns.resolver.as_deref()))?;
    let mut problems = 0;
    for r in &records {
        let published = lookup.txt(&r.name).await?;
        let (status, detail) = match dns::judge(r, &published) {
            Found::Ok => ("ok", String::new()),
            Found::Warn(w) => ("warn", w),
            Found::Missing => {
                problems += 1;
                ("missing", format!("publish: {}", dns::zone_line(r)))
            }
            Found::Differs(why) => {
                problems += 1;
                ("differs", why)
            }
        };
        println!(
            "{status:<8} {:<6} {}{}",
            kind(r.kind),
            r.name,
            if detail.is_empty() {
                String::new()
            } else {
                format!("  ({detail})")
            }
        );
    }
    Ok(if problems == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn kind(k: dns::Kind) -> &'static str {
    match k {
        dns::Kind::Dkim => "DKIM",
        dns::Kind::Spf => "SPF",
        dns::Kind::Dmarc => "DMARC",
    }
}
