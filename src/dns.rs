//! The DNS side of sending: the records a From domain needs (DKIM, SPF,
//! DMARC), written out ready to paste, and looked up to see whether they
//! are published as they should be.
//!
//! Which records, and whether what is published is right, are pure
//! functions ([`expected`], [`judge`]); the lookups are at the edge
//! ([`Lookup`]).

use std::net::{IpAddr, SocketAddr};

use anyhow::{Context, anyhow};
use hickory_resolver::config::{NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::RData;
use hickory_resolver::{Resolver, TokioResolver};
use letterpress_dkim::{Ed25519Key, RsaKey};

use crate::config::Config;

/// What a record is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A DKIM public key (`v=DKIM1`), RSA or Ed25519.
    Dkim,
    /// The domain's SPF policy (`v=spf1`).
    Spf,
    /// The domain's DMARC policy (`v=DMARC1`).
    Dmarc,
}

/// A TXT record the From domain should publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Expected {
    /// What it is for.
    pub(crate) kind: Kind,
    /// Its name, fully qualified, without the final dot.
    pub(crate) name: String,
    /// Its value.
    pub(crate) value: String,
    /// One line on what it does, for the listing.
    pub(crate) note: String,
}

/// The placeholder in the SPF record for the relay's own mechanism.
pub(crate) const SPF_PLACEHOLDER: &str = "include:YOUR-RELAY'S-SPF-DOMAIN";

/// The domain of the From address (`newsletter.from`).
pub(crate) fn from_domain(config: &Config) -> anyhow::Result<String> {
    let from: lettre::message::Mailbox = config.newsletter.from.parse().map_err(|e| {
        anyhow!(
            "newsletter.from {:?} is not a mailbox: {e}",
            config.newsletter.from
        )
    })?;
    Ok(from.email.domain().to_ascii_lowercase())
}

/// The DKIM records for the keys `config` signs with, and the SPF and
/// DMARC records of the From domain.
pub(crate) fn expected(config: &Config) -> anyhow::Result<Vec<Expected>> {
    let from = from_domain(config)?;
    let mut records = Vec::new();
    let d = &config.dkim;
    if let (Some(domain), Some(selector), Some(path)) =
        (&d.domain, &d.selector, &d.private_key_path)
    {
        let key = crate::wiring::key(path, "dkim.private_key_path", RsaKey::from_pem)?;
        records.push(Expected {
            kind: Kind::Dkim,
            name: format!("{selector}._domainkey.{domain}"),
            value: key
                .dns_record()
                .map_err(|e| anyhow!("dkim.private_key_path: {e}"))?,
            note: format!(
                "DKIM: the public half of {} ({} bits RSA)",
                path.display(),
                key.bits()
            ),
        });
        if let Some(path) = &d.ed25519_private_key_path {
            let key =
                crate::wiring::key(path, "dkim.ed25519_private_key_path", Ed25519Key::from_pem)?;
            let selector = d
                .ed25519_selector
                .clone()
                .unwrap_or_else(|| format!("{selector}-ed25519"));
            records.push(Expected {
                kind: Kind::Dkim,
                name: format!("{selector}._domainkey.{domain}"),
                value: key.dns_record(),
                note: format!(
                    "DKIM: the public half of {} (Ed25519, the second signature)",
                    path.display()
                ),
            });
        }
    }
    records.push(Expected {
        kind: Kind::Spf,
        name: from.clone(),
        value: format!("v=spf1 {SPF_PLACEHOLDER} ~all"),
        note: "SPF: the servers that may send as this domain. Put your relay's `include:` \
               (its documentation names it; `ip4:`/`ip6:` for your own server) in place of \
               the placeholder, and merge with any SPF record the domain has: one per domain"
            .to_string(),
    });
    records.push(Expected {
        kind: Kind::Dmarc,
        name: format!("_dmarc.{from}"),
        value: format!("v=DMARC1; p=none; rua=mailto:dmarc-reports@{from}"),
        note: "DMARC: p=none only asks for reports (to rua). Once they show every message \
               passing DKIM or SPF aligned with the From domain, tighten to p=quarantine, \
               then p=reject"
            .to_string(),
    });
    Ok(records)
}

/// `value` cut into the strings of one TXT record: at most 255 bytes each
/// (RFC 1035), cut between characters.
pub(crate) fn txt_strings(value: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for c in value.chars() {
        if current.len() + c.len_utf8() > 255 {
            out.push(std::mem::take(&mut current));
        }
        current.push(c);
    }
    if !current.is_empty() || out.is_empty() {
        out.push(current);
    }
    out
}

/// The record as a zone-file line: `name. IN TXT ( "…" "…" )`.
pub(crate) fn zone_line(record: &Expected) -> String {
    let strings: Vec<String> = txt_strings(&record.value)
        .iter()
        .map(|s| format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\"")))
        .collect();
    if strings.len() == 1 {
        format!("{}. IN TXT {}", record.name, strings[0])
    } else {
        format!("{}. IN TXT ( {} )", record.name, strings.join(" "))
    }
}

/// What the lookup of a record found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Found {
    /// Published as it should be.
    Ok,
    /// Published, with a remark (e.g. DMARC `p=none`).
    Warn(String),
    /// Not published.
    Missing,
    /// Published, but not as it should be: why.
    Differs(String),
}

/// The value of `tag` in a `tag=value; …` record, spaces removed.
fn tag(record: &str, tag: &str) -> Option<String> {
    record.split(';').find_map(|part| {
        let (k, v) = part.split_once('=')?;
        (k.trim().eq_ignore_ascii_case(tag))
            .then(|| v.chars().filter(|c| !c.is_whitespace()).collect())
    })
}

/// Judges what `published` (the TXT records at the expected name, each its
/// strings joined) says against `expected`.
pub(crate) fn judge(expected: &Expected, published: &[String]) -> Found {
    let starting = |prefix: &str| -> Vec<&String> {
        published
            .iter()
            .filter(|r| r.trim_start().to_ascii_lowercase().starts_with(prefix))
            .collect()
    };
    match expected.kind {
        Kind::Dkim => {
            let keys = starting("v=dkim1");
            let ours = tag(&expected.value, "p");
            match keys.as_slice() {
                [] if published.iter().any(|r| r.contains("p=")) => check_dkim(published.iter().collect(), ours),
                [] => Found::Missing,
                keys => check_dkim(keys.to_vec(), ours),
            }
        }
        Kind::Spf => match starting("v=spf1").as_slice() {
            [] => Found::Missing,
            [one] if one.contains(SPF_PLACEHOLDER) => {
                Found::Differs("the SPF record still has the placeholder for the relay".into())
            }
            [_] => Found::Ok,
            _ => Found::Differs(
                "more than one SPF record: receivers then treat SPF as broken (permerror); merge them into one".into(),
            ),
        },
        Kind::Dmarc => match starting("v=dmarc1").as_slice() {
            [] => Found::Missing,
            [one] => match tag(one, "p").as_deref() {
                Some("none") => Found::Warn(
                    "p=none: reports only; tighten to quarantine once they show everything passing".into(),
                ),
                Some("quarantine" | "reject") => Found::Ok,
                _ => Found::Differs("the DMARC record has no valid p= policy".into()),
            },
            _ => Found::Differs("more than one DMARC record; receivers ignore them all".into()),
        },
    }
}

fn check_dkim(published: Vec<&String>, ours: Option<String>) -> Found {
    let theirs: Vec<String> = published.iter().filter_map(|r| tag(r, "p")).collect();
    match (&ours, theirs.as_slice()) {
        (Some(ours), found) if found.iter().any(|p| p == ours) => Found::Ok,
        (_, [p]) if p.is_empty() => Found::Differs("the published key is revoked (empty p=)".into()),
        _ => Found::Differs(
            "the published key is not the key letterpress signs with (dkim.private_key_path): publish the record `letterpress dns` prints".into(),
        ),
    }
}

/// Looks up TXT records.
pub(crate) struct Lookup {
    resolver: TokioResolver,
}

impl Lookup {
    /// A resolver asking `server` (`IP` or `IP:PORT`; from `--resolver`,
    /// else `dns.resolver`), or the system's configuration.
    pub(crate) fn new(server: Option<&str>) -> anyhow::Result<Lookup> {
        let resolver = match server {
            Some(s) => {
                let addr: SocketAddr = s
                    .parse()
                    .or_else(|_| s.parse::<IpAddr>().map(|ip| SocketAddr::new(ip, 53)))
                    .map_err(|_| anyhow!("resolver {s:?} is not an IP address or IP:PORT"))?;
                let mut ns = NameServerConfig::udp_and_tcp(addr.ip());
                for c in &mut ns.connections {
                    c.port = addr.port();
                }
                Resolver::builder_with_config(
                    ResolverConfig::from_name_servers(vec![ns]),
                    TokioRuntimeProvider::default(),
                )
                .build()
            }
            None => Resolver::builder_tokio().and_then(|b| b.build()),
        }
        .context("setting up the DNS resolver")?;
        Ok(Lookup { resolver })
    }

    /// The TXT records at `name`, each its strings joined (empty when there
    /// are none).
    pub(crate) async fn txt(&self, name: &str) -> anyhow::Result<Vec<String>> {
        match self.resolver.txt_lookup(format!("{name}.")).await {
            Ok(lookup) => Ok(lookup
                .answers()
                .iter()
                .filter_map(|r| match &r.data {
                    RData::TXT(txt) => Some(
                        txt.txt_data
                            .iter()
                            .map(|s| String::from_utf8_lossy(s).into_owned())
                            .collect::<String>(),
                    ),
                    _ => None,
                })
                .collect()),
            Err(e) if e.is_no_records_found() || e.is_nx_domain() => Ok(Vec::new()),
            Err(e) => Err(anyhow!("looking up TXT {name}: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(kind: Kind, value: &str) -> Expected {
        Expected {
            kind,
            name: "x.example.com".into(),
            value: value.into(),
            note: String::new(),
        }
    }

    #[test]
    fn long_values_are_cut_into_strings_of_255_bytes() {
        let value = format!("v=DKIM1; k=rsa; p={}", "A".repeat(400));
        let parts = txt_strings(&value);
        assert_eq!(parts.len(), 2);
        assert!(parts.iter().all(|p| p.len() <= 255));
        assert_eq!(parts.concat(), value);
        assert_eq!(txt_strings("short"), ["short"]);
        let line = zone_line(&record(Kind::Dkim, &value));
        assert!(
            line.starts_with("x.example.com. IN TXT ( \"v=DKIM1"),
            "{line}"
        );
    }

    #[test]
    fn judges_what_is_published() {
        let dkim = record(Kind::Dkim, "v=DKIM1; k=rsa; p=ABCDEF");
        let spf = record(Kind::Spf, "v=spf1 include:YOUR-RELAY'S-SPF-DOMAIN ~all");
        let dmarc = record(Kind::Dmarc, "v=DMARC1; p=none");
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let table: [(&Expected, Vec<String>, &str); 12] = [
            (&dkim, s(&["v=DKIM1; k=rsa; p=ABCDEF"]), "ok"),
            (&dkim, s(&["v=DKIM1; k=rsa; p=ABC DEF"]), "ok"),
            (&dkim, s(&["v=DKIM1; k=rsa; p=OTHER"]), "differs"),
            (&dkim, s(&["v=DKIM1; p="]), "differs"),
            (&dkim, s(&[]), "missing"),
            (&spf, s(&["v=spf1 include:_spf.relay.example ~all"]), "ok"),
            (
                &spf,
                s(&["v=spf1 include:YOUR-RELAY'S-SPF-DOMAIN ~all"]),
                "differs",
            ),
            (&spf, s(&["v=spf1 a ~all", "v=spf1 mx ~all"]), "differs"),
            (&spf, s(&["google-site-verification=x"]), "missing"),
            (
                &dmarc,
                s(&["v=DMARC1; p=none; rua=mailto:d@example.com"]),
                "warn",
            ),
            (&dmarc, s(&["v=DMARC1; p=reject"]), "ok"),
            (&dmarc, s(&[]), "missing"),
        ];
        for (expected, published, verdict) in table {
            let found = judge(expected, &published);
            let got = match found {
                Found::Ok => "ok",
                Found::Warn(_) => "warn",
                Found::Missing => "missing",
                Found::Differs(_) => "differs",
            };
            assert_eq!(got, verdict, "{:?} against {published:?}", expected.kind);
        }
    }
}
