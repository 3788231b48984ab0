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
