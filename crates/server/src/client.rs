//! Who is asking: the visitor's address behind a reverse proxy, and the
//! key a per-visitor limit counts by.
//!
//! `X-Forwarded-For` is a list any client can write. Only the entries
//! appended by proxies we trust (`server.trusted_proxies`) are believed:
//! walking the list from its right end (the hop nearest to us), each entry
//! is believed only while the address it came from is a trusted proxy. A
//! direct client, or one that only claims to be behind a proxy, is known
//! by its own socket address.

use std::net::{IpAddr, Ipv6Addr};

use ipnet::IpNet;

/// The peers whose `X-Forwarded-For` is believed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<IpNet>);

/// An entry of `server.trusted_proxies` that is neither an address nor a CIDR.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is neither an IP address nor a CIDR block (e.g. 127.0.0.1, 10.0.0.0/8, ::1)")]
pub struct BadProxy(pub String);

impl TrustedProxies {
    /// Parses addresses (`127.0.0.1`, `::1`) and CIDR blocks (`10.0.0.0/8`).
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<Self, BadProxy> {
        entries
            .iter()
            .map(|e| {
                let e = e.as_ref().trim();
                e.parse::<IpNet>()
                    .or_else(|_| e.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| BadProxy(e.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Self)
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.0.iter().any(|net| net.contains(&ip))
    }
}

/// An IPv4 address written as IPv6 (`::ffff:1.2.3.4`, what a dual-stack
/// socket reports) is the IPv4 address.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

/// One `X-Forwarded-For` entry: an address, maybe with a port
/// (`1.2.3.4:5678`, `[2001:db8::1]:443`).
fn parse_entry(entry: &str) -> Option<IpAddr> {
    let e = entry.trim();
    if let Ok(ip) = e.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Some(rest) = e.strip_prefix('[') {
        return rest.split_once(']')?.0.parse().ok();
    }
    let (host, port) = e.rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    host.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4)
}

/// The visitor's address: `peer` (the socket's), or what trusted proxies
/// say in `forwarded_for` (every `X-Forwarded-For` value, in order).
pub(crate) fn client_ip<'a>(
    peer: IpAddr,
    forwarded_for: impl IntoIterator<Item = &'a str>,
    trusted: &TrustedProxies,
) -> IpAddr {
    let mut client = canonical(peer);
    if !trusted.trusts(client) {
        return client;
    }
    let entries: Vec<&str> = forwarded_for
        .into_iter()
        .flat_map(|v| v.split(','))
        .collect();
    for entry in entries.iter().rev() {
        match parse_entry(entry) {
            Some(ip) => client = canonical(ip),
            // Garbage in a hop we trusted: stop at the last address we
            // know, a proxy's (its visitors then share one limit).
            None => break,
        }
        if !trusted.trusts(client) {
            break;
        }
    }
    client
}

/// What per-visitor limits count by: an IPv4 address, or the /64 an IPv6
/// address is in (one household or server gets a whole /64, and would
/// otherwise have 2^64 keys to spend).
pub(crate) fn rate_key(ip: IpAddr) -> IpAddr {
    match canonical(ip) {
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(Ipv6Addr::from(bits))
        }
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("an address")
    }

    #[test]
    fn believes_forwarded_for_only_from_trusted_proxies() {
        let proxies = TrustedProxies::parse(&["127.0.0.1", "10.0.0.0/8", "::1"]).expect("parses");
        let none = TrustedProxies::default();
        // (peer, X-Forwarded-For values, trusted, visitor)
        let table: [(&str, &[&str], &TrustedProxies, &str); 12] = [
            // No proxy configured: the header is anyone's to write.
            ("203.0.113.9", &["198.51.100.1"], &none, "203.0.113.9"),
            ("127.0.0.1", &["198.51.100.1"], &none, "127.0.0.1"),
            // A direct client claiming a proxy is not believed.
            ("203.0.113.9", &["198.51.100.1"], &proxies, "203.0.113.9"),
            // Behind one trusted proxy.
            ("127.0.0.1", &["198.51.100.1"], &proxies, "198.51.100.1"),
            ("::1", &["2001:db8::7"], &proxies, "2001:db8::7"),
            (
                "::ffff:127.0.0.1",
                &["198.51.100.1"],
                &proxies,
                "198.51.100.1",
            ),
            // A visitor's forged entries left of the real one are ignored.
            (
                "127.0.0.1",
                &["6.6.6.6, 198.51.100.1"],
                &proxies,
                "198.51.100.1",
            ),
            // Two trusted hops (CDN then nginx), in two header lines.
            (
                "127.0.0.1",
                &["198.51.100.1, 10.1.2.3", "10.9.9.9"],
                &proxies,
                "198.51.100.1",
            ),
            // Ports and brackets as some proxies write them.
            (
                "127.0.0.1",
                &["198.51.100.1:5123"],
                &proxies,
                "198.51.100.1",
            ),
            ("127.0.0.1", &["[2001:db8::7]:443"], &proxies, "2001:db8::7"),
            // Garbage: the nearest known address, the proxy's.
            ("127.0.0.1", &["not-an-address"], &proxies, "127.0.0.1"),
            // Trusted proxy without the header.
            ("10.0.0.5", &[], &proxies, "10.0.0.5"),
        ];
        for (peer, xff, trusted, visitor) in table {
            assert_eq!(
                client_ip(ip(peer), xff.iter().copied(), trusted),
                ip(visitor),
                "peer {peer}, X-Forwarded-For {xff:?}"
            );
        }
    }

    #[test]
    fn limits_count_ipv6_by_its_64() {
        assert_eq!(rate_key(ip("2001:db8:1:2:aaaa::1")), ip("2001:db8:1:2::"));
        assert_eq!(
            rate_key(ip("2001:db8:1:2:ffff:ffff:ffff:ffff")),
            ip("2001:db8:1:2::")
        );
        assert_ne!(rate_key(ip("2001:db8:1:3::1")), ip("2001:db8:1:2::"));
        assert_eq!(rate_key(ip("198.51.100.7")), ip("198.51.100.7"));
        assert_eq!(rate_key(ip("::ffff:198.51.100.7")), ip("198.51.100.7"));
    }

    #[test]
    fn proxies_are_addresses_or_blocks() {
        assert!(TrustedProxies::parse(&["127.0.0.1", "fd00::/8", " 10.0.0.0/8 "]).is_ok());
        assert_eq!(
            TrustedProxies::parse(&["localhost"]),
            Err(BadProxy("localhost".into()))
        );
    }
}
