//! This host's addresses that other machines may dial, likeliest first: what a ticket of
//! `p2p share` lists when it listens on every interface.
//!
//! The order, by kind of address (the interfaces' own order within a kind):
//! 1. private IPv4 (10/8, 172.16/12, 192.168/16): the LAN or the datacenter, where most
//!    getters are;
//! 2. other IPv4 (public, and 100.64/10 of carrier NAT and overlay networks);
//! 3. global IPv6;
//! 4. unique local IPv6 (fc00::/7);
//! 5. IPv4 link-local (169.254/16): a cable between two hosts and no DHCP.
//!
//! Never listed: loopback (unless nothing else exists: see `share`), unspecified and
//! multicast addresses, and IPv6 link-local ones (fe80::/10), which name nothing without
//! the dialer's own interface (a scope a ticket cannot carry). A getter tries all of a
//! ticket's addresses at once, so the order matters only where a ticket cannot hold them
//! all (`TRACKERS_MAX`) and for the order the getter falls back in later.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The IPs of this host's interfaces that others may dial, likeliest first, each once.
/// Empty when the interfaces cannot be listed (the caller falls back to loopback).
pub fn dialable_ips() -> Vec<IpAddr> {
    match if_addrs::get_if_addrs() {
        Ok(interfaces) => ordered(interfaces.iter().map(|i| i.ip())),
        Err(e) => {
            tracing::warn!("cannot list this host's network interfaces: {e}");
            Vec::new()
        }
    }
}

/// `ips` without those never listed, likeliest first (see the module doc), each once.
pub fn ordered(ips: impl IntoIterator<Item = IpAddr>) -> Vec<IpAddr> {
    let mut ranked: Vec<(u8, usize, IpAddr)> = Vec::new();
    for (position, ip) in ips.into_iter().enumerate() {
        if let Some(rank) = rank(ip)
            && !ranked.iter().any(|&(_, _, seen)| seen == ip)
        {
            ranked.push((rank, position, ip));
        }
    }
    ranked.sort();
    ranked.into_iter().map(|(_, _, ip)| ip).collect()
}

/// Where `ip` goes in the order (lower first); `None`: never listed.
fn rank(ip: IpAddr) -> Option<u8> {
    match ip.to_canonical() {
        IpAddr::V4(v4) => rank_v4(v4),
        IpAddr::V6(v6) => rank_v6(v6),
    }
}

fn rank_v4(ip: Ipv4Addr) -> Option<u8> {
    if ip.is_loopback() || ip.is_unspecified() || ip.is_multicast() || ip.is_broadcast() {
        None
    } else if ip.is_private() {
        Some(0)
    } else if ip.is_link_local() {
        Some(4)
    } else {
        Some(1)
    }
}

fn rank_v6(ip: Ipv6Addr) -> Option<u8> {
    if ip.is_loopback() || ip.is_unspecified() || ip.is_multicast() || ip.is_unicast_link_local() {
        None
    } else if ip.is_unique_local() {
        Some(3)
    } else {
        Some(2)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ips(list: &[&str]) -> Vec<IpAddr> {
        list.iter().map(|ip| ip.parse().unwrap()).collect()
    }

    #[test]
    fn likely_addresses_come_first_and_unusable_ones_never() {
        let found = ordered(ips(&[
            "127.0.0.1",
            "::1",
            "fe80::1",
            "169.254.3.4",
            "fd00::5",
            "2001:db8::5",
            "203.0.113.9",
            "192.168.1.20",
            "10.0.0.5",
            "192.168.1.20",
            "0.0.0.0",
        ]));
        assert_eq!(
            found,
            ips(&[
                "192.168.1.20",
                "10.0.0.5",
                "203.0.113.9",
                "2001:db8::5",
                "fd00::5",
                "169.254.3.4",
            ])
        );
        assert!(ordered(ips(&["127.0.0.1", "::1"])).is_empty());
    }
}
