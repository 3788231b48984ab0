//! Where others are told to dial a peer: the port it claims, at the IP its connection came
//! from. The tracker lists peers this way and peers name each other this way in peer
//! exchange, so no member can point the others at a third party.

/// Where a peer is listed (by the tracker, and in peer exchange) whose `Hello` claims
/// `claimed` (`HOST:PORT`, or empty for a client that serves nobody) and whose connection
/// came from `from` (`IP:PORT`).
///
/// The claimed port, at the IP the connection came from: a member cannot make the others
/// dial a third party by claiming its address, and a peer listening on every interface
/// (`0.0.0.0:PORT`) is found where it was seen. With `trust_claimed`, the claim as is
/// (only an unspecified IP filled in from `from`). `Err`: the claim has no port.
pub(crate) fn listed_addr(
    claimed: &str,
    from: &str,
    trust_claimed: bool,
) -> Result<String, String> {
    if claimed.is_empty() {
        return Ok(String::new());
    }
    let port = claimed
        .rsplit_once(':')
        .and_then(|(_, port)| port.parse::<u16>().ok())
        .filter(|&port| port != 0);
    let (Some((host, _)), Some(port)) = (claimed.rsplit_once(':'), port) else {
        return Err(format!("listen address '{claimed}' is not HOST:PORT"));
    };
    let unspecified = matches!(host, "0.0.0.0" | "[::]");
    if trust_claimed && !unspecified {
        return Ok(claimed.to_owned());
    }
    // `from` is the driver's word, not the network's: `IP:PORT`.
    match from.rsplit_once(':') {
        Some((seen_ip, _)) if !seen_ip.is_empty() => Ok(format!("{seen_ip}:{port}")),
        _ => Err(format!(
            "cannot list '{claimed}': where the connection came from is unknown"
        )),
    }
}

/// Where an asker that reached the tracker's host at `reached_ip` (the local IP of its
/// connection, as the driver saw it; empty when unknown) should dial a peer listed at
/// `listed`.
///
/// A peer listed at a loopback IP connected from the tracker's own host: the sharer beside
/// its embedded tracker. Only askers on that host could dial it there, so an asker that
/// came in over another address gets the same port at the address it reached the host at,
/// the one address of that host it is sure to reach. Anything else is given as listed: the
/// rewrite only ever names the tracker's own host, which a member could already name.
pub(crate) fn as_reached_at(listed: &str, reached_ip: &str) -> String {
    let Some((host, port)) = listed.rsplit_once(':') else {
        return listed.to_owned();
    };
    if reached_ip.is_empty() || is_loopback_host(reached_ip) || !is_loopback_host(host) {
        return listed.to_owned();
    }
    format!("{reached_ip}:{port}")
}

/// Whether `addr` (`IP:PORT`, as the driver writes it) is at a loopback IP.
pub(crate) fn is_loopback_addr(addr: &str) -> bool {
    addr.rsplit_once(':')
        .is_some_and(|(host, _)| is_loopback_host(host))
}

/// Whether `host` (an IP as the driver writes it: IPv6 in brackets) is a loopback one.
fn is_loopback_host(host: &str) -> bool {
    host.starts_with("127.") || host == "[::1]" || host == "::1"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_on_the_trackers_host_is_given_where_the_asker_reached_it() {
        assert_eq!(as_reached_at("127.0.0.1:7001", "10.0.0.5"), "10.0.0.5:7001");
        assert_eq!(as_reached_at("[::1]:7001", "[fd00::5]"), "[fd00::5]:7001");
        assert_eq!(
            as_reached_at("127.0.0.1:7001", "[fd00::5]"),
            "[fd00::5]:7001"
        );
        // An asker on the same host, or one whose local address is unknown: as listed.
        assert_eq!(
            as_reached_at("127.0.0.1:7001", "127.0.0.1"),
            "127.0.0.1:7001"
        );
        assert_eq!(as_reached_at("127.0.0.1:7001", ""), "127.0.0.1:7001");
        // Peers elsewhere are never rewritten.
        assert_eq!(as_reached_at("10.0.0.9:7001", "10.0.0.5"), "10.0.0.9:7001");
        assert_eq!(as_reached_at("", "10.0.0.5"), "");
    }

    #[test]
    fn listed_addresses_take_the_observed_ip() {
        assert_eq!(
            listed_addr("0.0.0.0:7001", "10.0.0.9:5555", false),
            Ok("10.0.0.9:7001".to_owned())
        );
        assert!(listed_addr("nowhere", "10.0.0.9:5555", false).is_err());
    }
}
