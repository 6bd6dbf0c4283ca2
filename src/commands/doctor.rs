//! `letterpress doctor`: one table of pass / warn / fail over what an
//! operator must get right before the first send, with the fix for each.
//! Exit 1 on any fail.

use std::process::ExitCode;
use std::time::Duration;

use letterpress_dkim::RsaKey;

use letterpress_sender::{Probe, ProbedTls, Transport};

use crate::config::{Config, TransportKind};
use crate::dns::{self, Found, Lookup};

/// The verdict of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Verdict {
    /// As it should be.
    Pass,
    /// Works, but should be improved.
    Warn,
    /// Will cause mail to be lost, rejected or unsafe.
    Fail,
}

/// One line of the table.
#[derive(Debug, Clone)]
pub(crate) struct Check {
    verdict: Verdict,
    what: String,
    detail: String,
}

fn check(verdict: Verdict, what: impl Into<String>, detail: impl Into<String>) -> Check {
    Check {
        verdict,
        what: what.into(),
        detail: detail.into(),
    }
}

/// Whether a From domain and a DKIM signing domain align as DMARC's relaxed
/// mode asks: the same domain, or one a subdomain of the other. (Strictly,
/// relaxed alignment compares organizational domains, which needs the
/// public suffix list; a subdomain of either is what letterpress configs
/// use, and anything else is reported.)
pub(crate) fn aligned(from: &str, dkim: &str) -> bool {
    let (from, dkim) = (from.to_ascii_lowercase(), dkim.to_ascii_lowercase());
    from == dkim || from.ends_with(&format!(".{dkim}")) || dkim.ends_with(&format!(".{from}"))
}

/// `letterpress doctor`.
pub(crate) async fn doctor(config: &Config, resolver: Option<&str>) -> anyhow::Result<ExitCode> {
    let mut checks = Vec::new();
    identity(config, &mut checks);
    public_url(config, &mut checks).await;
    dkim_and_dns(config, resolver, &mut checks).await;
    relay(config, &mut checks).await;
    checks.push(outage_within_leases(
        config.delivery.lease,
        config.delivery.database_outage,
    ));
    let width = checks.iter().map(|c| c.what.len()).max().unwrap_or(0);
    for c in &checks {
        let mark = match c.verdict {
            Verdict::Pass => "pass",
            Verdict::Warn => "WARN",
            Verdict::Fail => "FAIL",
        };
        println!("{mark}  {:<width$}  {}", c.what, c.detail);
    }
    let fails = checks.iter().filter(|c| c.verdict == Verdict::Fail).count();
    let warns = checks.iter().filter(|c| c.verdict == Verdict::Warn).count();
    eprintln!("{} checks: {fails} failed, {warns} warnings", checks.len());
    Ok(if fails == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn identity(config: &Config, checks: &mut Vec<Check>) {
    let n = &config.newsletter;
    let address = n.postal_address.trim();
    checks.push(if address.is_empty() || address.starts_with("Your postal address") {
        check(
            Verdict::Fail,
            "newsletter.postal_address",
            "not set: commercial email must name a postal address (CAN-SPAM); set it in letterpress.toml",
        )
    } else {
        check(Verdict::Pass, "newsletter.postal_address", address.lines().next().unwrap_or(""))
    });
}

async fn public_url(config: &Config, checks: &mut Vec<Check>) {
    let base = config.server.public_url.trim_end_matches('/');
    let parsed = url::Url::parse(base);
    match &parsed {
        Ok(u) if u.scheme() == "https" => checks.push(check(Verdict::Pass, "server.public_url is https", base)),
        Ok(_) => checks.push(check(
            Verdict::Fail,
            "server.public_url is https",
            format!(
                "{base}: every email's unsubscribe and signup links point here; mailbox providers expect https \
                 and readers' browsers warn without it. Put `serve` behind an HTTPS reverse proxy \
                 (docs/deploy.md) and set server.public_url to its https:// address"
            ),
        )),
        Err(e) => {
            checks.push(check(Verdict::Fail, "server.public_url", format!("{base:?} is not a URL: {e}")));
            return;
        }
    }
    let http = match reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .redirect(reqwest::redirect::Policy::none())
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            checks.push(check(Verdict::Fail, "HTTP client", e.to_string()));
            return;
        }
    };
    let health = http.get(format!("{base}/healthz")).send().await;
    checks.push(match health {
        Ok(r) if r.status().is_success() => check(Verdict::Pass, "public_url answers /healthz", format!("{base}/healthz: {}", r.status())),
        Ok(r) => check(
            Verdict::Fail,
            "public_url answers /healthz",
            format!("{base}/healthz answered {}: is `letterpress serve` running behind it, with its database?", r.status()),
        ),
        Err(e) => check(
            Verdict::Fail,
            "public_url answers /healthz",
            format!("{base}/healthz: {}: start `letterpress serve` and make the proxy forward to server.bind", crate::error_message(&e.into())),
        ),
    });
    // The routes a reader's mail client and the signup form use must reach
    // letterpress through the proxy, not a 404 of the proxy's own.
    let unsubscribe = http.get(format!("{base}/u/doctor-check")).send().await;
    let signup = http
        .post(format!("{base}/subscribe"))
        .form(&[("email", "")])
        .send()
        .await;
    let ours = |r: &Result<reqwest::Response, reqwest::Error>, status: u16| {
        r.as_ref().is_ok_and(|r| {
            r.status().as_u16() == status && r.headers().contains_key("content-security-policy")
        })
    };
    checks.push(if ours(&unsubscribe, 404) && ours(&signup, 400) {
        check(Verdict::Pass, "unsubscribe and signup routes", format!("{base}/u/… and {base}/subscribe reach letterpress"))
    } else {
        check(
            Verdict::Fail,
            "unsubscribe and signup routes",
            format!("{base}/u/… or {base}/subscribe does not reach letterpress: forward every path of public_url to server.bind"),
        )
    });
}

async fn dkim_and_dns(config: &Config, resolver: Option<&str>, checks: &mut Vec<Check>) {
    let from = match dns::from_domain(config) {
        Ok(d) => d,
        Err(e) => {
            checks.push(check(
                Verdict::Fail,
                "newsletter.from",
                crate::error_message(&e),
            ));
            return;
        }
    };
    let d = &config.dkim;
    match (&d.domain, &d.selector, &d.private_key_path) {
        (Some(domain), Some(_), Some(path)) => {
            checks.push(if aligned(&from, domain) {
                check(Verdict::Pass, "From domain aligns with dkim.domain", format!("{from} / {domain}"))
            } else {
                check(
                    Verdict::Fail,
                    "From domain aligns with dkim.domain",
                    format!("From is @{from} but messages are signed for {domain}: DMARC fails; set dkim.domain = \"{from}\" (and publish its key)"),
                )
            });
            match crate::wiring::key(path, "dkim.private_key_path", RsaKey::from_pem) {
                Ok(key) => checks.push(check(
                    Verdict::Pass,
                    "DKIM key",
                    format!("{} ({} bits RSA)", path.display(), key.bits()),
                )),
                Err(e) => checks.push(check(
                    Verdict::Fail,
                    "DKIM key",
                    format!("{}; `letterpress dkim keygen` writes a 2048-bit key", crate::error_message(&e)),
                )),
            }
        }
        _ => checks.push(check(
            Verdict::Fail,
            "DKIM signing",
            "not configured: Gmail and Yahoo require bulk senders to sign; `letterpress dkim keygen`, then set [dkim]",
        )),
    }
    let records = match dns::expected(config) {
        Ok(r) => r,
        Err(e) => {
            checks.push(check(
                Verdict::Fail,
                "DNS records",
                crate::error_message(&e),
            ));
            return;
        }
    };
    let lookup = match Lookup::new(resolver.or(config.dns.resolver.as_deref())) {
        Ok(l) => l,
        Err(e) => {
            checks.push(check(
                Verdict::Fail,
                "DNS resolver",
                crate::error_message(&e),
            ));
            return;
        }
    };
    for r in &records {
        let what = match r.kind {
            dns::Kind::Dkim => format!("DKIM record {}", r.name),
            dns::Kind::Spf => format!("SPF record {}", r.name),
            dns::Kind::Dmarc => format!("DMARC record {}", r.name),
        };
        let found = match lookup.txt(&r.name).await {
            Ok(published) => dns::judge(r, &published),
            Err(e) => Found::Differs(crate::error_message(&e)),
        };
        checks.push(match found {
            Found::Ok => check(Verdict::Pass, what, "published"),
            Found::Warn(w) => check(Verdict::Warn, what, w),
            Found::Missing => check(
                Verdict::Fail,
                what,
                format!("not published: {}", dns::zone_line(r)),
            ),
            Found::Differs(why) => check(Verdict::Fail, what, why),
        });
    }
}

/// The smallest SIZE limit a relay may advertise for an issue: the HTML
/// part stays under 102 KB (Gmail clips past it), and with its text twin,
/// the quoted-printable encoding and the headers a message is a few
/// hundred KB at most. A relay below this would refuse some issues.
const MIN_RELAY_SIZE: u64 = 1024 * 1024;

async fn relay(config: &Config, checks: &mut Vec<Check>) {
    if config.delivery.transport != TransportKind::Smtp {
        checks.push(check(
            Verdict::Warn,
            "delivery.transport",
            "file: messages are written to delivery.outbox_dir, not sent; set transport = \"smtp\" and smtp_url",
        ));
        return;
    }
    let url = letterpress_core::redact_url(&config.delivery.smtp_url);
    let client = match crate::wiring::transport(config) {
        Ok(Transport::Smtp(client)) => client,
        Ok(Transport::File { .. }) => return,
        Err(e) => {
            checks.push(check(
                Verdict::Fail,
                "relay settings",
                crate::error_message(&e),
            ));
            return;
        }
    };
    let probe = client.probe().await;
    for row in relay_rows(&url, &probe) {
        checks.push(row);
    }
}

/// The relay's rows of the table, from one probe session.
fn relay_rows(url: &str, probe: &Probe) -> Vec<Check> {
    let mut rows = Vec::new();
    match &probe.connected {
        Ok(name) => rows.push(check(
            Verdict::Pass,
            "relay answers EHLO",
            format!("{url}: {name}"),
        )),
        Err(e) => {
            rows.push(check(
                Verdict::Fail,
                "relay answers EHLO",
                format!("{url}: {e}; check the host and port of delivery.smtp_url"),
            ));
            return rows;
        }
    }
    match &probe.tls {
        Some(ProbedTls::Implicit) => {
            rows.push(check(Verdict::Pass, "relay TLS", "implicit TLS (smtps), certificate verified"))
        }
        Some(ProbedTls::StartTls) => {
            rows.push(check(Verdict::Pass, "relay TLS", "STARTTLS, certificate verified"))
        }
        Some(ProbedTls::NotOffered) => rows.push(check(
            if probe.loopback { Verdict::Warn } else { Verdict::Fail },
            "relay TLS",
            if probe.loopback {
                "no STARTTLS offered: plain text, acceptable only because the relay is on this machine"
            } else {
                "no STARTTLS offered: messages and the AUTH password would cross the network in plain \
                 text; enable TLS on the relay, or use its smtps:// port in delivery.smtp_url"
            },
        )),
        Some(ProbedTls::PlainOnLoopback(e)) => rows.push(check(
            Verdict::Warn,
            "relay TLS",
            format!(
                "{e}; the relay is on this machine, so letterpress sends to it in plain text \
                 instead, which does not leave the machine"
            ),
        )),
        Some(ProbedTls::Failed(e)) => {
            rows.push(check(Verdict::Fail, "relay TLS", e.to_string()));
            return rows;
        }
        None => return rows,
    }
    rows.push(match &probe.auth {
        Some(Ok(())) => check(
            Verdict::Pass,
            "relay accepts AUTH",
            "with the user of delivery.smtp_url",
        ),
        Some(Err(e @ letterpress_sender::SendError::PlainAuth { .. })) => {
            check(Verdict::Fail, "relay accepts AUTH", e.to_string())
        }
        Some(Err(e)) => check(
            Verdict::Fail,
            "relay accepts AUTH",
            format!(
                "{e}; check the user in delivery.smtp_url and the password \
                 (LETTERPRESS_DELIVERY__SMTP_PASSWORD or delivery.smtp_password_file)"
            ),
        ),
        None if probe.offers("AUTH") => check(
            Verdict::Warn,
            "relay accepts AUTH",
            "the relay offers AUTH but delivery.smtp_url names no user: it may refuse to relay; \
             use smtp://USER@host and LETTERPRESS_DELIVERY__SMTP_PASSWORD",
        ),
        None => check(
            Verdict::Pass,
            "relay accepts AUTH",
            "no AUTH configured or asked for",
        ),
    });
    rows.push(if probe.offers("PIPELINING") {
        check(
            Verdict::Pass,
            "relay PIPELINING",
            "offered: two round trips a message",
        )
    } else {
        check(
            Verdict::Warn,
            "relay PIPELINING",
            "not offered: four round trips a message, so a large list sends slower; \
             raise delivery.concurrency, or enable PIPELINING on the relay",
        )
    });
    rows.push(if probe.offers("8BITMIME") {
        check(Verdict::Pass, "relay 8BITMIME", "offered")
    } else {
        check(
            Verdict::Warn,
            "relay 8BITMIME",
            "not offered: a 7-bit relay; messages with a non-ASCII address or header cannot go \
             through it (they fail); enable 8BITMIME and SMTPUTF8 on the relay",
        )
    });
    rows.push(match probe.keyword("SIZE").map(|v| v.parse::<u64>()) {
        Some(Ok(0)) => check(Verdict::Pass, "relay SIZE", "no limit"),
        Some(Ok(n)) if n >= MIN_RELAY_SIZE => {
            check(Verdict::Pass, "relay SIZE", format!("{n} bytes"))
        }
        Some(Ok(n)) => check(
            Verdict::Fail,
            "relay SIZE",
            format!(
                "{n} bytes: an issue can be several hundred KB and would be refused; \
                 raise the relay's limit to at least {MIN_RELAY_SIZE} bytes \
                 (postfix: message_size_limit)"
            ),
        ),
        Some(Err(_)) | None => check(
            Verdict::Warn,
            "relay SIZE",
            "the relay advertises no SIZE limit, so a too-large issue is only found when it is refused",
        ),
    });
    rows
}

/// Whether a worker that waits out the database for all of
/// `database_outage` still holds its claims when it is back. A worker renews
/// its leases every third of `lease`, so two thirds of one are left when an
/// outage begins; the worker itself renews before it claims again, but
/// another worker on the database (`serve`'s, a second `worker`) may take
/// over leases that ran out and send those messages a second time.
fn outage_within_leases(lease: Duration, database_outage: Duration) -> Check {
    const WHAT: &str = "delivery.database_outage within the leases";
    let (outage, lease_text) = (
        humantime::format_duration(database_outage),
        humantime::format_duration(lease),
    );
    if database_outage < lease * 2 / 3 {
        check(
            Verdict::Pass,
            WHAT,
            format!("{outage}, under two thirds of delivery.lease ({lease_text})"),
        )
    } else {
        check(
            Verdict::Warn,
            WHAT,
            format!(
                "{outage} is not under two thirds of delivery.lease ({lease_text}): a worker cut off \
                 from the database that long may find its claims taken over by another worker \
                 (serve's, or a second `letterpress worker`) and sent twice; raise delivery.lease \
                 or lower delivery.database_outage"
            ),
        )
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{Verdict, aligned, outage_within_leases};

    #[test]
    fn an_outage_must_end_before_another_worker_may_take_the_leases_over() {
        let s = Duration::from_secs;
        for (lease, outage, verdict) in [
            (s(120), s(60), Verdict::Pass), // the defaults
            (s(120), s(79), Verdict::Pass),
            (s(120), s(80), Verdict::Warn), // two thirds: a lease may be out
            (s(120), s(600), Verdict::Warn),
            (s(900), s(600), Verdict::Warn),
            (s(901), s(600), Verdict::Pass),
        ] {
            assert_eq!(
                outage_within_leases(lease, outage).verdict,
                verdict,
                "lease {lease:?}, outage {outage:?}"
            );
        }
    }

    #[test]
    fn alignment_is_relaxed() {
        assert!(aligned("rust-trends.com", "rust-trends.com"));
        assert!(aligned("news.rust-trends.com", "rust-trends.com"));
        assert!(aligned("rust-trends.com", "mail.rust-trends.com"));
        assert!(aligned("Rust-Trends.com", "rust-trends.COM"));
        assert!(!aligned("rust-trends.com", "relay.example.net"));
        assert!(!aligned("evil-rust-trends.com", "rust-trends.com"));
    }
}
