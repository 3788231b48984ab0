//! A peer whose dial failed before the handshake (refused because the remote is full, or
//! unreachable) is not dialled again at once: every peer exchange and locate round would
//! otherwise redial the same full peers first.

use std::time::Duration;

use p2p_core::peer::{Peer, PeerAction, PeerConfig};
use p2p_core::wire::{Message, PROTOCOL_VERSION};
use p2p_core::{ConnId, ContentId, Instant, PeerId};

fn drain(peer: &mut Peer) -> Vec<PeerAction> {
    std::iter::from_fn(|| peer.poll_action()).collect()
}

fn dials(actions: &[PeerAction]) -> Vec<(ConnId, String)> {
    actions
        .iter()
        .filter_map(|a| match a {
            PeerAction::Connect { conn, addr } => Some((*conn, addr.clone())),
            _ => None,
        })
        .collect()
}

#[test]
fn a_refused_dial_is_not_retried_at_once() {
    let content_id = ContentId([9; 32]);
    let mut peer = Peer::new(
        PeerConfig {
            peer_id: PeerId(1),
            swarm: "s".into(),
            listen_addr: "me:1".into(),
            ..PeerConfig::default()
        },
        Instant::ZERO,
    );
    peer.download(Instant::ZERO, content_id, None);
    drain(&mut peer);
    // One peer connects to us and tells us of another.
    let conn = peer.accept(Instant::ZERO).unwrap();
    peer.handle_message(
        Instant::ZERO,
        conn,
        Message::Hello {
            version: PROTOCOL_VERSION,
            peer_id: PeerId(2),
            listen_addr: "two:1".into(),
            swarm: "s".into(),
        },
    );
    drain(&mut peer);
    let exchange = Message::PeerExchange {
        content_id,
        peers: vec![(PeerId(3), "three:1".into())],
    };

    peer.handle_message(Instant::ZERO, conn, exchange.clone());
    let first = dials(&drain(&mut peer));
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].1, "three:1");
    peer.handle_closed(Instant::ZERO, first[0].0);
    drain(&mut peer);

    peer.handle_message(Instant::ZERO, conn, exchange.clone());
    assert!(dials(&drain(&mut peer)).is_empty(), "redialled at once");

    // The backoff is bounded: a full peer frees a slot now and then.
    let later = Instant::ZERO + Duration::from_secs(20);
    peer.handle_message(later, conn, exchange);
    assert_eq!(dials(&drain(&mut peer)).len(), 1, "never redialled");
}
