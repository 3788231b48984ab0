//! Driving one peer by hand, the test playing the remote side: drain what the peer asks
//! for, and open a connection with a valid handshake. For tests of one machine's answers
//! to chosen (often hostile) messages, where a whole [`Swarm`](super::Swarm) would hide
//! them.

use crate::ids::{ConnId, PeerId};
use crate::peer::{Peer, PeerAction, PeerConfig};
use crate::secure::Remote;
use crate::time::Instant;
use crate::wire::{Message, PROTOCOL_VERSION};

/// The peer such tests drive: id 1, in swarm `s`, listening at `me:1`, default limits.
pub fn local_peer() -> Peer {
    Peer::new(
        PeerConfig {
            peer_id: PeerId(1),
            swarm: "s".into(),
            listen_addr: "me:1".into(),
            ..PeerConfig::default()
        },
        Instant::ZERO,
    )
}

/// [`local_peer`] serving every chunk of `manifest`, its start-up actions drained.
pub fn seeding_peer(manifest: &crate::manifest::Manifest) -> Peer {
    let mut peer = local_peer();
    peer.publish(Instant::ZERO, manifest.clone());
    drain(&mut peer);
    peer
}

/// Remote peer `remote` (listening at `remoteN:1`) connects to `peer` in swarm `s`.
pub fn connect_remote(peer: &mut Peer, remote: u64) -> ConnId {
    let remote_hello = hello(PeerId(remote), &format!("remote{remote}:1"), "s");
    accept_with(peer, Instant::ZERO, remote_hello)
        .expect("the peer takes the connection")
        .0
}

/// Every action the peer has queued, in order (the drain after an input).
pub fn drain(peer: &mut Peer) -> Vec<PeerAction> {
    std::iter::from_fn(|| peer.poll_action()).collect()
}

/// The `Hello` a remote peer `peer_id`, listening at `listen_addr`, sends in `swarm`.
pub fn hello(peer_id: PeerId, listen_addr: &str, swarm: &str) -> Message {
    Message::Hello {
        version: PROTOCOL_VERSION,
        peer_id,
        listen_addr: listen_addr.into(),
        swarm: swarm.into(),
    }
}

/// A remote connects to the peer and says `hello`, under the key of the id and in the
/// swarm the `hello` names (an honest remote); returns the connection (`None` when the peer
/// refused it at its connection limit) and the peer's answer.
pub fn accept_with(
    peer: &mut Peer,
    now: Instant,
    hello: Message,
) -> Option<(ConnId, Vec<PeerAction>)> {
    let remote = match &hello {
        Message::Hello { peer_id, swarm, .. } => Remote {
            peer_id: *peer_id,
            swarm: swarm.clone(),
        },
        _ => Remote {
            peer_id: PeerId(u64::MAX),
            swarm: peer.swarm().to_string(),
        },
    };
    accept_as(peer, now, remote, hello)
}

/// A remote whose handshake proved `remote` connects to the peer and says `hello` (which
/// may claim another id: an impostor).
pub fn accept_as(
    peer: &mut Peer,
    now: Instant,
    remote: Remote,
    hello: Message,
) -> Option<(ConnId, Vec<PeerAction>)> {
    // The kit's remotes connect from where they say they listen (or from a loopback port
    // when they serve nobody).
    let from = match &hello {
        Message::Hello { listen_addr, .. } if !listen_addr.is_empty() => listen_addr.clone(),
        _ => "127.0.0.1:1".to_owned(),
    };
    let conn = peer.accept(now, remote, from)?;
    peer.handle_message(now, conn, hello);
    Some((conn, drain(peer)))
}
