//! A live peer's session: the connection it said `Hello` on, its swarm and listen address,
//! the traffic counters of its last `Heartbeat`, and what it holds of each content.

use std::collections::BTreeMap;

use crate::chunkset::ChunkSet;
use crate::ids::{ConnId, ContentId, PeerId};
use crate::time::Instant;

/// Every live session, by peer id.
pub(super) type Sessions = BTreeMap<PeerId, Session>;

/// One live peer.
pub(super) struct Session {
    pub(super) conn: ConnId,
    pub(super) swarm: String,
    pub(super) listen_addr: String,
    pub(super) uploaded_bytes: u64,
    pub(super) downloaded_bytes: u64,
    pub(super) last_seen: Instant,
    /// Contents of which the peer holds at least one chunk (or the whole of an empty file).
    pub(super) holdings: BTreeMap<ContentId, ChunkSet>,
}

/// Where the tracker lists a peer whose `Hello` claims `claimed` (`HOST:PORT`, or empty for
/// a client that serves nobody) and whose connection came from `from` (`IP:PORT`).
///
/// The claimed port, at the IP the connection came from: a member cannot make the others
/// dial a third party by claiming its address, and a peer listening on every interface
/// (`0.0.0.0:PORT`) is found where it was seen. With `trust_claimed`, the claim as is
/// (only an unspecified IP filled in from `from`). `Err`: the claim has no port.
pub(super) fn listed_addr(
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
            "cannot list '{claimed}': the tracker did not see where the connection came from"
        )),
    }
}

impl Session {
    /// A session just opened by `Hello`: nothing held, nothing counted yet.
    pub(super) fn new(now: Instant, conn: ConnId, swarm: String, listen_addr: String) -> Session {
        Session {
            conn,
            swarm,
            listen_addr,
            uploaded_bytes: 0,
            downloaded_bytes: 0,
            last_seen: now,
            holdings: BTreeMap::new(),
        }
    }

    /// Whether other peers can download from this one.
    pub(super) fn is_source(&self) -> bool {
        !self.listen_addr.is_empty()
    }

    /// A `Heartbeat`'s traffic counters, as the peer reports them.
    pub(super) fn heartbeat(&mut self, uploaded_bytes: u64, downloaded_bytes: u64) {
        self.uploaded_bytes = uploaded_bytes;
        self.downloaded_bytes = downloaded_bytes;
    }
}
