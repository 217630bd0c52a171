//! The HTTP client for deliveries. SSRF defence: a URL's address is checked when the
//! connection is made (a DNS resolver that drops forbidden addresses, and a check of
//! IP-literal hosts, which bypass resolvers), so a hostname that later resolves to an
//! internal address is refused too. Redirects are never followed; proxies from the
//! environment are ignored.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// Whether curbpay may connect to `ip` for a webhook (false for loopback, private,
/// link-local, multicast, unique-local and other non-public ranges).
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public_v4(v4);
            }
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00 // unique local fc00::/7
                || (first & 0xffc0) == 0xfe80 // link-local fe80::/10
                || (first & 0xffc0) == 0xfec0 // site-local (deprecated) fec0::/10
                || v6.segments()[..6] == [0, 0, 0, 0, 0, 0] // IPv4-compatible ::a.b.c.d
                || (v6.segments()[0] == 0x64 && v6.segments()[1] == 0xff9b) // NAT64 64:ff9b::/96
                || first == 0x2002 // 6to4 (embeds an IPv4 address)
                || (first == 0x2001 && v6.segments()[1] == 0x0db8)) // documentation
        }
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    !(ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_multicast()
        || ip.is_broadcast()
        || ip.is_unspecified()
        || ip.is_documentation()
        || a == 0
        || (a == 100 && (64..128).contains(&b)) // shared address space 100.64/10
        || (a == 192 && b == 0 && ip.octets()[2] == 0) // IETF protocol assignments
        || (a == 198 && (b == 18 || b == 19)) // benchmarking
        || a >= 240) // reserved
}

/// Why a delivery was refused before any connection.
pub fn check_ip(ip: IpAddr, allow_private: bool) -> Result<(), String> {
    if allow_private || is_public(ip) { Ok(()) } else { Err(format!("refused: {ip} is not a public address")) }
}

/// A resolver that drops non-public addresses (unless private targets are allowed)
/// and fails when none is left.
struct FilteringResolver {
    allow_private: bool,
}

impl Resolve for FilteringResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allow_private = self.allow_private;
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let allowed: Vec<SocketAddr> =
                found.iter().copied().filter(|addr| allow_private || is_public(addr.ip())).collect();
            if allowed.is_empty() {
                let err: Box<dyn std::error::Error + Send + Sync> = if found.is_empty() {
                    format!("{host} did not resolve").into()
                } else {
                    format!("refused: {host} resolves only to non-public addresses").into()
                };
                return Err(err);
            }
            Ok(Box::new(allowed.into_iter()) as Addrs)
        })
    }
}

/// The delivery client.
pub fn build(allow_private: bool, timeout: Duration) -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .dns_resolver(Arc::new(FilteringResolver { allow_private }))
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .timeout(timeout)
        .connect_timeout(timeout)
        .user_agent(concat!("curbpay-webhooks/", env!("CARGO_PKG_VERSION")))
        .build()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn refuses_internal_ranges() {
        for blocked in [
            "127.0.0.1",
            "127.255.0.9",
            "10.0.0.1",
            "172.16.5.4",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254", // cloud metadata
            "169.254.0.1",
            "224.0.0.1",
            "239.255.255.250",
            "255.255.255.255",
            "0.0.0.0",
            "100.64.0.1",
            "240.0.0.1",
            "::1",
            "::",
            "fe80::1",
            "fc00::1",
            "fd12:3456:789a::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::ffff:10.0.0.1",
            "64:ff9b::a00:1",
            "2002:7f00:1::",
        ] {
            assert!(!is_public(ip(blocked)), "{blocked} must be refused");
            assert!(check_ip(ip(blocked), false).is_err());
            assert!(check_ip(ip(blocked), true).is_ok(), "allowed with the setting");
        }
    }

    #[test]
    fn allows_public_addresses() {
        for public in ["8.8.8.8", "1.1.1.1", "172.32.0.1", "192.169.0.1", "2606:4700:4700::1111", "2a00:1450::1"] {
            assert!(is_public(ip(public)), "{public} is public");
        }
    }

    #[tokio::test]
    async fn the_resolver_drops_loopback_names() {
        // `localhost` resolves to loopback only: refused without the setting, allowed
        // with it. No connection is made here, only resolution.
        let refused = FilteringResolver { allow_private: false }.resolve("localhost".parse::<Name>().unwrap()).await;
        assert!(refused.is_err());
        let allowed = FilteringResolver { allow_private: true }.resolve("localhost".parse::<Name>().unwrap()).await;
        assert!(allowed.unwrap().all(|a| a.ip().is_loopback()));
    }
}
