//! A peer announces to every tracker it knows (issue 15): the swarm's and its own, one
//! session each. Each is told what it holds; each is asked where a download's content
//! is, and the members they name add up; losing one leaves the other's session alone.

use p2p_core::peer::{Peer, PeerAction, PeerConfig};
use p2p_core::secure::Remote;
use p2p_core::testkit::TestFile;
use p2p_core::testkit::remote::drain;
use p2p_core::wire::{Message, PROTOCOL_VERSION, PeerChunks};
use p2p_core::{ChunkSet, ConnId, Instant, Manifest, PeerId};

const CHUNK: u32 = 16 * 1024;
const CHUNKS: u32 = 2;

fn manifest(salt: u8) -> Manifest {
    TestFile::new("f.bin", CHUNK, vec![salt; (CHUNKS * CHUNK) as usize]).manifest
}

/// A peer with the swarm's tracker at `swarm:1` and its own at `own:1`, both sessions
/// welcomed: the peer and the two tracker connections.
fn peer_with_two_trackers() -> (Peer, ConnId, ConnId) {
    let config = PeerConfig {
        peer_id: PeerId(1),
        swarm: "s".into(),
        listen_addr: "me:1".into(),
        trackers: vec!["swarm:1".into()],
        more_trackers: vec![vec!["own:1".into()]],
        ..PeerConfig::default()
    };
    let mut peer = Peer::new(config, Instant::ZERO);
    peer.handle_timeout(Instant::ZERO);
    let dialled: Vec<(ConnId, String)> = drain(&mut peer)
        .into_iter()
        .filter_map(|a| match a {
            PeerAction::Connect { conn, addr } => Some((conn, addr)),
            _ => None,
        })
        .collect();
    let conn_to = |addr: &str| {
        dialled
            .iter()
            .find(|(_, a)| a == addr)
            .unwrap_or_else(|| panic!("{addr} not dialled: {dialled:?}"))
            .0
    };
    let (swarm, own) = (conn_to("swarm:1"), conn_to("own:1"));
    for (conn, id) in [(swarm, 1000), (own, 1001)] {
        let remote = Remote {
            peer_id: PeerId(id),
            swarm: "s".into(),
        };
        peer.handle_connected(Instant::ZERO, conn, remote);
        let welcome = Message::Welcome {
            version: PROTOCOL_VERSION,
            peer_id: PeerId(id),
        };
        peer.handle_message(Instant::ZERO, conn, welcome);
    }
    drain(&mut peer);
    (peer, swarm, own)
}

fn sent_on(actions: &[PeerAction], conn: ConnId) -> Vec<&Message> {
    actions
        .iter()
        .filter_map(|a| match a {
            PeerAction::Send { conn: to, message } if *to == conn => Some(message),
            _ => None,
        })
        .collect()
}

#[test]
fn every_tracker_is_told_what_the_peer_holds() {
    let (mut peer, swarm, own) = peer_with_two_trackers();
    peer.publish(Instant::ZERO, manifest(1));
    let actions = drain(&mut peer);
    for conn in [swarm, own] {
        assert!(
            sent_on(&actions, conn)
                .iter()
                .any(|m| matches!(m, Message::Announce { .. })),
            "no announce on {conn:?}: {actions:?}"
        );
    }
}

#[test]
fn members_named_by_each_tracker_add_up_and_one_tracker_lost_leaves_the_other() {
    let (mut peer, swarm, own) = peer_with_two_trackers();
    let manifest = manifest(2);
    let content_id = manifest.content_id();
    peer.download(Instant::ZERO, content_id, Some(manifest));
    peer.download_prepared(Instant::ZERO, content_id, Ok(ChunkSet::new(CHUNKS).into()));
    let actions = drain(&mut peer);
    for conn in [swarm, own] {
        assert!(
            sent_on(&actions, conn)
                .iter()
                .any(|m| matches!(m, Message::Locate { .. })),
            "no locate on {conn:?}: {actions:?}"
        );
    }
    let holder = |id: u64| PeerChunks {
        peer_id: PeerId(id),
        listen_addr: format!("holder{id}:1"),
        chunks: ChunkSet::full(CHUNKS),
    };
    for (conn, id) in [(swarm, 5), (own, 6)] {
        let located = Message::Located {
            content_id,
            peers: vec![holder(id)],
        };
        peer.handle_message(Instant::ZERO, conn, located);
    }
    let dials = |actions: Vec<PeerAction>| -> Vec<(ConnId, String)> {
        actions
            .into_iter()
            .filter_map(|a| match a {
                PeerAction::Connect { conn, addr } => Some((conn, addr)),
                _ => None,
            })
            .collect()
    };
    let first = dials(drain(&mut peer));
    let addrs: Vec<&str> = first.iter().map(|(_, a)| a.as_str()).collect();
    assert_eq!(addrs, ["holder5:1", "holder6:1"]);
    // Both dials fail; at the next locate both are tried again: the second tracker's
    // answer was added to the first's, not put in its place.
    for (conn, _) in &first {
        peer.handle_closed(Instant::ZERO, *conn);
    }
    drain(&mut peer);
    let later = Instant::ZERO + PeerConfig::default().locate_interval;
    peer.handle_timeout(later);
    let again = dials(drain(&mut peer));
    let addrs: Vec<&str> = again.iter().map(|(_, a)| a.as_str()).collect();
    assert!(
        addrs.contains(&"holder5:1") && addrs.contains(&"holder6:1"),
        "{addrs:?}"
    );

    // The swarm's tracker goes away: its session backs off; the own one stays.
    peer.handle_closed(Instant::ZERO, swarm);
    let actions = drain(&mut peer);
    assert!(
        !actions.contains(&PeerAction::Close { conn: own }),
        "{actions:?}"
    );
    assert!(
        peer.is_tracker_ready(),
        "the own tracker's session is still ready"
    );
}
