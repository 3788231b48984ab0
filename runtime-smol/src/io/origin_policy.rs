//! What a helper may fetch for another peer: the origin policy.
//!
//! A fetcher chooses the URL of its job, and a helper fetches it from the helper's own place
//! in the network. Without a policy a helper is an open proxy into its own network: a member
//! could read the helper's loopback services, its cloud metadata endpoint or its LAN, and
//! tell open ports from closed ones by the failures. So a helper fetches only `http` and
//! `https` URLs whose host resolves to public addresses; private ranges only when its
//! operator says so (`--allow-private-origins`); and exactly the origins its operator names
//! (`--allow-origin HOST:PORT`, a local artifact cache, say), whatever their addresses.
//!
//! This module is the decision alone, a pure function of the scheme, the origin and its
//! resolved addresses; `http` applies it to every address it connects to and every redirect.
//! The user's own `p2p fetch URL` is not subject to it: that user chose the URL.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The operator's choices; the default is the strict policy.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OriginPolicy {
    /// Also fetch from private ranges (10/8, 172.16/12, 192.168/16, 100.64/10, fc00::/7).
    pub allow_private: bool,
    /// Origins fetched whatever their addresses, as `host:port` in lower case.
    pub allowed_origins: Vec<String>,
}

/// Where an address leads, for the policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AddressClass {
    Public,
    /// A private network: the helper's LAN, which a member elsewhere could not reach.
    Private,
    /// Never fetched from for others: this machine, its link, multicast, reserved.
    Forbidden(&'static str),
}

/// An `--allow-origin` entry, `HOST:PORT` (IPv6 in brackets), as the policy holds it.
pub fn parse_allowed_origin(text: &str) -> Result<String, String> {
    let (host, port) = text
        .rsplit_once(':')
        .filter(|(host, _)| !host.is_empty() && !host.contains('/'))
        .ok_or_else(|| format!("expected HOST:PORT, got {text}"))?;
    let port: u16 = port
        .parse()
        .map_err(|_| format!("the port of {text} is not a number"))?;
    Ok(origin_key(host, port))
}

impl OriginPolicy {
    /// Whether `scheme://host:port` resolving to `addrs` may be fetched for another peer;
    /// `Err` says why not (for the helper's log, not for the fetcher). Every address must
    /// pass: the connection may go to any of them.
    pub fn check(
        &self,
        scheme: &str,
        host: &str,
        port: u16,
        addrs: &[IpAddr],
    ) -> Result<(), String> {
        if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
            return Err(format!("scheme {scheme} is not http or https"));
        }
        if self.allowed_origins.contains(&origin_key(host, port)) {
            return Ok(());
        }
        if addrs.is_empty() {
            return Err(format!("{host} resolved to no address"));
        }
        for &addr in addrs {
            match classify(addr) {
                AddressClass::Public => {}
                AddressClass::Private if self.allow_private => {}
                AddressClass::Private => {
                    return Err(format!(
                        "{host} resolves to {addr}, a private address (--allow-private-origins allows it)"
                    ));
                }
                AddressClass::Forbidden(what) => {
                    return Err(format!("{host} resolves to {addr}, {what}"));
                }
            }
        }
        Ok(())
    }
}

/// `host:port` as the allowlist holds it: lower case, IPv6 without brackets.
fn origin_key(host: &str, port: u16) -> String {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    format!("{}:{port}", host.to_ascii_lowercase())
}

pub fn classify(addr: IpAddr) -> AddressClass {
    match addr {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

fn classify_v4(addr: Ipv4Addr) -> AddressClass {
    let [a, b, ..] = addr.octets();
    if a == 0 {
        // 0.0.0.0/8, "this network": 0.0.0.0 reaches this machine on most systems.
        AddressClass::Forbidden("an unspecified address")
    } else if addr.is_loopback() {
        AddressClass::Forbidden("a loopback address")
    } else if addr.is_link_local() {
        // 169.254/16 holds cloud metadata services (169.254.169.254).
        AddressClass::Forbidden("a link-local address")
    } else if addr.is_multicast() {
        AddressClass::Forbidden("a multicast address")
    } else if a >= 240 {
        // 255.255.255.255 and the reserved 240/4.
        AddressClass::Forbidden("a broadcast or reserved address")
    } else if addr.is_private() || (a == 100 && (64..128).contains(&b)) {
        // 100.64/10 (shared address space, RFC 6598) is counted as private: it is not
        // reachable from the internet and leads into a carrier's or an overlay network's
        // (Tailscale's, say) machines, as a LAN range does.
        AddressClass::Private
    } else {
        AddressClass::Public
    }
}

fn classify_v6(addr: Ipv6Addr) -> AddressClass {
    if let Some(v4) = addr.to_ipv4_mapped() {
        // ::ffff:a.b.c.d is a.b.c.d on a dual-stack socket.
        return classify_v4(v4);
    }
    let segments = addr.segments();
    if addr.is_unspecified() {
        AddressClass::Forbidden("an unspecified address")
    } else if addr.is_loopback() {
        AddressClass::Forbidden("a loopback address")
    } else if segments[..6] == [0; 6] {
        // The deprecated IPv4-compatible ::a.b.c.d: no public host has one.
        AddressClass::Forbidden("a reserved address")
    } else if segments[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        // NAT64 (64:ff9b::/96) reaches the IPv4 address it embeds.
        let [_, _, _, _, _, _, high, low] = segments;
        classify_v4(Ipv4Addr::from((u32::from(high) << 16) | u32::from(low)))
    } else if addr.is_multicast() {
        AddressClass::Forbidden("a multicast address")
    } else if segments[0] & 0xffc0 == 0xfe80 {
        AddressClass::Forbidden("a link-local address")
    } else if segments[0] & 0xfe00 == 0xfc00 || segments[0] & 0xffc0 == 0xfec0 {
        // Unique local fc00::/7, and the deprecated site-local fec0::/10 as well.
        AddressClass::Private
    } else {
        AddressClass::Public
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn policy(allow_private: bool, allowed: &[&str]) -> OriginPolicy {
        OriginPolicy {
            allow_private,
            allowed_origins: allowed
                .iter()
                .map(|o| parse_allowed_origin(o).unwrap())
                .collect(),
        }
    }

    fn check(policy: &OriginPolicy, scheme: &str, host: &str, port: u16, addrs: &[&str]) -> bool {
        let addrs: Vec<IpAddr> = addrs.iter().map(|a| ip(a)).collect();
        policy.check(scheme, host, port, &addrs).is_ok()
    }

    #[test]
    fn forbidden_addresses_are_refused_whatever_the_flags() {
        let lax = policy(true, &[]);
        for addr in [
            "127.0.0.1",
            "127.9.9.9",
            "0.0.0.0",
            "0.1.2.3",
            "169.254.169.254",
            "224.0.0.1",
            "239.255.255.250",
            "255.255.255.255",
            "240.0.0.1",
            "::",
            "::1",
            "fe80::1",
            "febf::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::ffff:0.0.0.0",
            "::127.0.0.1",
            "64:ff9b::7f00:1",
        ] {
            assert!(
                matches!(classify(ip(addr)), AddressClass::Forbidden(_)),
                "{addr}"
            );
            assert!(!check(&lax, "http", "h", 80, &[addr]), "{addr}");
        }
    }

    #[test]
    fn private_addresses_need_the_flag() {
        let strict = OriginPolicy::default();
        let lax = policy(true, &[]);
        for addr in [
            "10.0.0.1",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "100.64.0.1",
            "100.127.255.254",
            "fc00::1",
            "fd12:3456::1",
            "::ffff:10.1.2.3",
            "::ffff:192.168.0.10",
            "64:ff9b::a00:1",
        ] {
            assert_eq!(classify(ip(addr)), AddressClass::Private, "{addr}");
            assert!(!check(&strict, "https", "h", 443, &[addr]), "{addr}");
            assert!(check(&lax, "https", "h", 443, &[addr]), "{addr}");
        }
    }

    #[test]
    fn public_addresses_pass() {
        let strict = OriginPolicy::default();
        for addr in [
            "93.184.216.34",
            "8.8.8.8",
            "172.32.0.1",
            "100.128.0.1",
            "192.169.0.1",
            "2606:2800:220:1:248:1893:25c8:1946",
            "::ffff:93.184.216.34",
            "64:ff9b::808:808",
        ] {
            assert_eq!(classify(ip(addr)), AddressClass::Public, "{addr}");
            assert!(check(&strict, "http", "h", 80, &[addr]), "{addr}");
        }
    }

    #[test]
    fn every_resolved_address_must_pass() {
        let strict = OriginPolicy::default();
        assert!(!check(&strict, "http", "h", 80, &["8.8.8.8", "127.0.0.1"]));
        assert!(
            !check(&strict, "http", "h", 80, &[]),
            "no address, no fetch"
        );
    }

    #[test]
    fn only_http_and_https() {
        let lax = policy(true, &["files.lan:8080"]);
        for scheme in ["file", "ftp", "gopher", "socks5", ""] {
            assert!(
                !check(&lax, scheme, "files.lan", 8080, &["8.8.8.8"]),
                "{scheme}"
            );
        }
        assert!(check(&lax, "HTTPS", "h", 443, &["8.8.8.8"]));
    }

    #[test]
    fn an_allowed_origin_passes_whatever_its_address_and_nothing_else_does() {
        let policy = policy(false, &["127.0.0.1:8080", "Cache.LAN:80", "[::1]:81"]);
        assert!(check(&policy, "http", "127.0.0.1", 8080, &["127.0.0.1"]));
        assert!(check(&policy, "http", "cache.lan", 80, &["10.0.0.9"]));
        assert!(check(&policy, "http", "[::1]", 81, &["::1"]));
        // Another port of the same host, or another name for the same address: refused.
        assert!(!check(&policy, "http", "127.0.0.1", 8081, &["127.0.0.1"]));
        assert!(!check(&policy, "http", "localhost", 8080, &["127.0.0.1"]));
    }

    #[test]
    fn bad_allowlist_entries_are_usage_errors() {
        for bad in ["127.0.0.1", "host:", "host:http", ":80", "http://h/x:80"] {
            assert!(parse_allowed_origin(bad).is_err(), "{bad}");
        }
    }
}
