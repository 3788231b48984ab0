//! Driving one peer by hand, the test playing the remote side: drain what the peer asks
//! for, and open a connection with a valid handshake. For tests of one machine's answers
//! to chosen (often hostile) messages, where a whole [`Swarm`](super::Swarm) would hide
//! them.

use crate::ids::{ConnId, PeerId};
use crate::peer::{Peer, PeerAction};
use crate::time::Instant;
use crate::wire::{Message, PROTOCOL_VERSION};

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

/// A remote connects to the peer and says `hello`; returns the connection (`None` when
/// the peer refused it at its connection limit) and the peer's answer.
pub fn accept_with(
    peer: &mut Peer,
    now: Instant,
    hello: Message,
) -> Option<(ConnId, Vec<PeerAction>)> {
    let conn = peer.accept(now)?;
    peer.handle_message(now, conn, hello);
    Some((conn, drain(peer)))
}
